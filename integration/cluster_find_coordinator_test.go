//go:build unix

package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// findGroupCoordinator asks node for the coordinator of group: the node it
// names, or the error code it answers.
func (c *testCluster) findGroupCoordinator(ctx context.Context, node int32, group string) (int32, int16, error) {
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.CoordinatorKeys = []string{group}
	kresp, err := c.requestNode(ctx, node, req)
	if err != nil {
		return 0, 0, err
	}
	cs := kresp.(*kmsg.FindCoordinatorResponse).Coordinators
	if len(cs) != 1 {
		return 0, 0, fmt.Errorf("FindCoordinator from node %d: %d coordinators", node, len(cs))
	}
	return cs[0].NodeID, cs[0].ErrorCode, nil
}

// TestClusterFindCoordinatorDuringLeaderMove: while the coordinator's node
// stops (SIGTERM: it hands its leaderships to the other nodes), the other two
// nodes, asked over and over, always name a coordinator. The new leader of the
// group's __consumer_offsets partition names itself while its report to the
// leader table is on its way and while it loads the partition, as Kafka names
// a partition's leader whatever its load state; the client's request there
// answers COORDINATOR_LOAD_IN_PROGRESS, which clients retry. It answered
// COORDINATOR_NOT_AVAILABLE, and franz-go fails every buffered record of a
// transaction when the FindCoordinator behind an AddPartitionsToTxn answers
// that (TestTxnClusterCoordinatorKillNine failed so in make test).
func TestClusterFindCoordinatorDuringLeaderMove(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	const group = "moving-group"
	var coord int32
	c.waitFor("every node names the coordinator of "+group, func(ctx context.Context) error {
		var named []int32
		for _, id := range c.IDs() {
			got, code, err := c.findGroupCoordinator(ctx, id, group)
			if err != nil {
				return err
			}
			if code != 0 {
				return fmt.Errorf("node %d: %v", id, kerr.ErrorForCode(code))
			}
			named = append(named, got)
		}
		if named[0] != named[1] || named[1] != named[2] {
			return fmt.Errorf("nodes name %v", named)
		}
		coord = named[0]
		return nil
	})

	type answer struct {
		node, named int32
		code        int16
	}
	var (
		mu      sync.Mutex
		answers []answer
		wg      sync.WaitGroup
	)
	stop := make(chan struct{})
	var others []int32
	for _, id := range c.IDs() {
		if id == coord {
			continue
		}
		others = append(others, id)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				named, code, err := c.findGroupCoordinator(ctx, id, group)
				if err != nil {
					t.Errorf("FindCoordinator on node %d: %v", id, err)
					return
				}
				mu.Lock()
				answers = append(answers, answer{id, named, code})
				mu.Unlock()
			}
		}()
	}
	time.Sleep(100 * time.Millisecond) // answers from before the move
	c.Stop(coord)
	c.waitFor("both other nodes name a new coordinator", func(ctx context.Context) error {
		for _, id := range others {
			got, code, err := c.findGroupCoordinator(ctx, id, group)
			if err != nil {
				return err
			}
			if code != 0 || got == coord {
				return fmt.Errorf("node %d names %d (%v)", id, got, kerr.ErrorForCode(code))
			}
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()

	failed, moved := 0, 0
	for _, a := range answers {
		switch {
		case a.code != 0:
			failed++
			if failed <= 5 {
				t.Errorf("node %d answered %v during the move", a.node, kerr.ErrorForCode(a.code))
			}
		case a.named != coord:
			moved++
		}
	}
	t.Logf("%d answers from nodes %v while node %d stopped: %d named the new coordinator, %d failed", len(answers), others, coord, moved, failed)
	if moved == 0 {
		t.Fatalf("no answer named a new coordinator: the move was not observed")
	}
}
