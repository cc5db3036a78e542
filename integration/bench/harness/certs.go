package harness

import (
	"fmt"
	"log"

	"github.com/shardcache/shardcache/internal/testcerts"
)

// fatalTB makes certificates outside a test: a failure ends the program.
type fatalTB struct{}

func (fatalTB) Helper()           {}
func (fatalTB) Fatal(args ...any) { log.Fatal(args...) }

// ClusterTLSArgs writes a throwaway CA and one node certificate for
// 127.0.0.1 (server and client usage) into dir and returns the
// --cluster-tls-* flags that use them; every node of a loopback cluster can
// share them.
func ClusterTLSArgs(dir string) []string {
	ca := testcerts.NewCA(fatalTB{}, "bench-cluster-ca")
	f := ca.Write(fatalTB{}, dir, "node", ca.Node(fatalTB{}, "node"))
	return []string{
		fmt.Sprintf("--cluster-tls-cert-file=%s", f.Cert),
		fmt.Sprintf("--cluster-tls-key-file=%s", f.Key),
		fmt.Sprintf("--cluster-tls-ca-file=%s", f.CA),
	}
}

// ServerTLSFiles writes a throwaway CA and a server certificate for
// 127.0.0.1 into dir and returns the certificate, key and CA file names.
func ServerTLSFiles(dir string) testcerts.Files {
	ca := testcerts.NewCA(fatalTB{}, "bench-ca")
	return ca.Write(fatalTB{}, dir, "server", ca.Server(fatalTB{}, "server"))
}
