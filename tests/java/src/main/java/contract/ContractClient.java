package contract;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;

/**
 * Another team's system: speaks the contract of schemas/README.md with Avro 1.12's single-object classes
 * and the Kafka Java client. Knows only the .avsc files, the golden fixtures and the README.
 *
 * <p>Usage: ContractClient BOOTSTRAP_SERVERS QUERY_API_URL SCHEMA_DIR GOLDEN_DIR REGISTERED_AVSC
 *
 * <p>Prints one line per check and, as the last line, a JSON summary. Exit 1 on a failed check.
 */
public final class ContractClient {
    private ContractClient() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println(
                    "usage: ContractClient BOOTSTRAP_SERVERS QUERY_API_URL SCHEMA_DIR GOLDEN_DIR REGISTERED_AVSC");
            System.exit(2);
        }
        Map<String, Object> summary = new LinkedHashMap<>();
        int exit = 0;
        try (Bus bus = new Bus(args[0])) {
            run(bus, args, summary);
            if (System.getenv("KAFKA_CLIENT_CONFIG") != null) {
                // Authorization: this system may send commands and read events, never write them.
                var refused = bus.forgeEvent("forged:0000000001", new byte[] {0});
                Check.that(refused != null, "the broker refuses an event forged on " + Bus.EVENTS
                        + (refused == null ? " (it was accepted)" : " (" + refused.getClass().getSimpleName() + ")"));
                summary.put("forged_event_refused", refused.getClass().getSimpleName());
            }
            summary.put("ok", true);
        } catch (Check.Violation violation) {
            System.out.println("FAIL " + violation.getMessage());
            System.err.println("contract violated: " + violation.getMessage());
            summary.put("ok", false);
            summary.put("failure", violation.getMessage());
            exit = 1;
        } catch (Exception | Error unexpected) {
            unexpected.printStackTrace();
            summary.put("ok", false);
            summary.put("failure", unexpected.toString());
            exit = 2;
        }
        summary.put("checks_passed", Check.passed);
        System.out.println(new ObjectMapper().disable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(summary));
        System.out.flush();
        System.exit(exit);
    }

    private static void run(Bus bus, String[] args, Map<String, Object> summary) throws Exception {
        Schemas local = Schemas.load(Path.of(args[2]));
        Check.that(local.size() > 0, "loaded " + local.size() + " schema files from " + args[2]);
        QueryApiSchemaStore store = new QueryApiSchemaStore(args[1]);
        Codec codec = new Codec(local, store);
        Schemas.Versioned registered = Schemas.parseFile(Path.of(args[4]));
        probeStore(store, local, registered);

        Scenario scenario = new Scenario(bus, codec, local, registered.schema());
        try {
            scenario.run();
        } finally {
            summary.putAll(scenario.summary());
            summary.put("store_fetches_live", store.fetched());
        }
        List<String> live = store.fetched();
        Check.that(live.size() >= 2, "the old v1 consumer fetched " + live.size() + " writer schemas from the store");

        Golden golden = new Golden(local, codec);
        try {
            golden.run(Path.of(args[3]));
        } finally {
            summary.put("golden", golden.summary());
            summary.put("schemas_fetched_from_store", store.fetched().size());
            summary.put("store_fetches", store.fetched());
        }
    }

    /** GET /schemas/{fingerprint}: a released schema, the registered one, and an unknown fingerprint. */
    private static void probeStore(QueryApiSchemaStore store, Schemas local, Schemas.Versioned registered) {
        Schemas.Versioned open = local.get("OpenAccount", 1);
        Schema served = store.get(open.fingerprint()).orElseThrow(() ->
                Check.fail("GET /schemas/" + Schemas.hex(open.fingerprint()) + " (OpenAccount.v1) answered 404"));
        Check.that(SchemaNormalization.toParsingForm(open.schema()).equals(SchemaNormalization.toParsingForm(served)),
                "GET /schemas/" + Schemas.hex(open.fingerprint()) + " serves OpenAccount.v1");
        Check.that(store.get(registered.fingerprint()).isPresent(),
                "GET /schemas/" + Schemas.hex(registered.fingerprint()) + " serves the registered "
                        + registered.label());
        Check.that(store.get(0L).isEmpty(), "GET /schemas/0000000000000000 answers 404");
    }
}
