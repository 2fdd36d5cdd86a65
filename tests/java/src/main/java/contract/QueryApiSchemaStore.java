package contract;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;
import org.apache.avro.message.SchemaStore;

/** Avro's SchemaStore backed by the query API's GET /schemas/{fingerprint}, with a cache. */
final class QueryApiSchemaStore implements SchemaStore {
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    private final String baseUrl;
    private final Map<Long, Schema> cache = new ConcurrentHashMap<>();
    private final List<String> fetched = new ArrayList<>();

    QueryApiSchemaStore(String baseUrl) {
        this.baseUrl = baseUrl.replaceAll("/+$", "");
    }

    @Override
    public Schema findByFingerprint(long fingerprint) {
        Schema cached = cache.get(fingerprint);
        if (cached != null) {
            return cached;
        }
        Optional<Schema> schema = get(fingerprint);
        if (schema.isEmpty()) {
            return null; // the decoder then throws MissingSchemaException
        }
        cache.put(fingerprint, schema.get());
        synchronized (fetched) {
            fetched.add(schema.get().getFullName() + "@" + Schemas.hex(fingerprint));
        }
        System.out.println("     fetched " + schema.get().getFullName() + " " + Schemas.hex(fingerprint)
                + " from the schema store");
        return schema.get();
    }

    /** What the store fetched so far: "full.Name@fingerprint-hex". */
    List<String> fetched() {
        synchronized (fetched) {
            return List.copyOf(fetched);
        }
    }

    /** One uncached request: the schema, or empty on 404. Checks the answer has the asked fingerprint. */
    Optional<Schema> get(long fingerprint) {
        String hex = Schemas.hex(fingerprint);
        URI uri = URI.create(baseUrl + "/schemas/" + hex);
        HttpResponse<String> response = request(uri);
        for (int retry = 0; response.statusCode() == 503 && retry < 10; retry++) {
            pause(Duration.ofSeconds(1)); // the API cannot answer an unknown fingerprint yet
            response = request(uri);
        }
        if (response.statusCode() == 404) {
            return Optional.empty();
        }
        if (response.statusCode() != 200) {
            throw Check.fail("GET " + uri + " answered " + response.statusCode() + ": " + response.body());
        }
        Schema schema = new Schema.Parser().parse(response.body());
        if (Schemas.fingerprint(schema) != fingerprint) {
            throw Check.fail("GET " + uri + " served a schema whose fingerprint is "
                    + Schemas.hex(Schemas.fingerprint(schema)));
        }
        return Optional.of(schema);
    }

    private HttpResponse<String> request(URI uri) {
        try {
            return http.send(HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(10)).GET().build(),
                    HttpResponse.BodyHandlers.ofString());
        } catch (IOException e) {
            throw new UncheckedIOException("GET " + uri, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
    }

    private static void pause(Duration duration) {
        try {
            Thread.sleep(duration.toMillis());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
    }
}
