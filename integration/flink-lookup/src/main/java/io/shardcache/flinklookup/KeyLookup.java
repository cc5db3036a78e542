package io.shardcache.flinklookup;

import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Collections;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.flink.streaming.api.functions.async.ResultFuture;
import org.apache.flink.streaming.api.functions.async.RichAsyncFunction;

/**
 * Looks a key up in shardcache with GET /v1/topics/{topic}/keys/{key} (raw format:
 * the body is the value, the offset and partition are response headers) without
 * blocking the task thread: Java's HttpClient answers on its own executor and the
 * result completes Flink's ResultFuture.
 *
 * <p>A 200 is {@link Enriched#found}; a 404 with code key_not_found or key_deleted
 * is an {@link Enriched} with that status; any other answer fails the future, so
 * the job fails rather than emitting a wrong enrichment.
 */
public class KeyLookup extends RichAsyncFunction<String, Enriched> {
    private static final long serialVersionUID = 1L;
    private static final Pattern CODE = Pattern.compile("\"code\"\\s*:\\s*\"([a-z_]+)\"");

    private final String httpBase; // http://host:port
    private final String topic;
    private transient HttpClient client;

    public KeyLookup(String httpAddr, String topic) {
        this.httpBase = httpAddr.startsWith("http") ? httpAddr : "http://" + httpAddr;
        this.topic = topic;
    }

    private HttpClient client() {
        if (client == null) {
            client = HttpClient.newBuilder()
                    .version(HttpClient.Version.HTTP_1_1)
                    .connectTimeout(Duration.ofSeconds(5))
                    .build();
        }
        return client;
    }

    /** Percent-encodes one path segment (URLEncoder writes spaces as '+', a literal in paths). */
    static String segment(String s) {
        return URLEncoder.encode(s, StandardCharsets.UTF_8).replace("+", "%20");
    }

    URI uri(String key) {
        return URI.create(httpBase + "/v1/topics/" + segment(topic) + "/keys/" + segment(key));
    }

    @Override
    public void asyncInvoke(String key, ResultFuture<Enriched> out) {
        HttpRequest req = HttpRequest.newBuilder(uri(key)).timeout(Duration.ofSeconds(10)).GET().build();
        client().sendAsync(req, HttpResponse.BodyHandlers.ofByteArray()).whenComplete((resp, err) -> {
            if (err != null) {
                out.completeExceptionally(err);
                return;
            }
            try {
                out.complete(Collections.singleton(toEnriched(key, resp)));
            } catch (RuntimeException e) {
                out.completeExceptionally(e);
            }
        });
    }

    static Enriched toEnriched(String key, HttpResponse<byte[]> resp) {
        String body = new String(resp.body(), StandardCharsets.UTF_8);
        if (resp.statusCode() == 200) {
            int partition = Integer.parseInt(resp.headers().firstValue("Shardcache-Partition").orElseThrow());
            long offset = Long.parseLong(resp.headers().firstValue("Shardcache-Offset").orElseThrow());
            return Enriched.found(key, body, partition, offset);
        }
        if (resp.statusCode() == 404) {
            Matcher m = CODE.matcher(body);
            if (m.find() && (m.group(1).equals("key_not_found") || m.group(1).equals("key_deleted"))) {
                return Enriched.missing(key, m.group(1));
            }
        }
        throw new IllegalStateException("lookup of " + key + ": HTTP " + resp.statusCode() + ": " + body);
    }
}
