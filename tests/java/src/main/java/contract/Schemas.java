package contract;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;

/** The released .avsc files, by file name ("OpenAccount.v1") and by CRC-64-AVRO fingerprint. */
final class Schemas {
    private static final Pattern FILE = Pattern.compile("([A-Za-z0-9_]+)\\.v([0-9]+)\\.avsc");

    record Versioned(String name, int version, Schema schema, long fingerprint) {
        String label() {
            return name + ".v" + version;
        }
    }

    private final Map<String, Versioned> byLabel = new HashMap<>();
    private final Map<Long, Versioned> byFingerprint = new HashMap<>();

    static Schemas load(Path folder) throws IOException {
        Schemas schemas = new Schemas();
        List<Path> files;
        try (Stream<Path> walk = Files.walk(folder)) {
            files = walk.filter(p -> p.toString().endsWith(".avsc")).sorted().toList();
        }
        for (Path file : files) {
            Versioned one = parseFile(file);
            schemas.byLabel.put(one.label(), one);
            schemas.byFingerprint.put(one.fingerprint(), one);
        }
        return schemas;
    }

    static Versioned parseFile(Path file) {
        Matcher name = FILE.matcher(file.getFileName().toString());
        if (!name.matches()) {
            throw Check.fail("schema file not named <Name>.v<N>.avsc: " + file);
        }
        try {
            Schema schema = new Schema.Parser().parse(file.toFile());
            return new Versioned(name.group(1), Integer.parseInt(name.group(2)), schema, fingerprint(schema));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    int size() {
        return byLabel.size();
    }

    Versioned get(String name, int version) {
        Versioned found = byLabel.get(name + ".v" + version);
        if (found == null) {
            throw Check.fail("no schema file " + name + ".v" + version + ".avsc");
        }
        return found;
    }

    Optional<Versioned> byFingerprint(long fingerprint) {
        return Optional.ofNullable(byFingerprint.get(fingerprint));
    }

    /** Version 1 of the record with this full name: what an old consumer was built against. */
    Schema v1Of(String fullName) {
        return byLabel.values().stream()
                .filter(v -> v.version() == 1 && v.schema().getFullName().equals(fullName))
                .map(Versioned::schema)
                .findFirst()
                .orElseThrow(() -> Check.fail("no v1 schema for " + fullName));
    }

    static long fingerprint(Schema schema) {
        return SchemaNormalization.parsingFingerprint64(schema);
    }

    /** The fingerprint as its 8 frame bytes (little-endian), in hex: the form used in URLs. */
    static String hex(long fingerprint) {
        byte[] bytes = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(fingerprint).array();
        return HexFormat.of().formatHex(bytes);
    }

    /** Bytes 2..9 of a single-object frame. */
    static long peekFingerprint(byte[] frame) {
        if (frame.length < 10 || frame[0] != (byte) 0xC3 || frame[1] != (byte) 0x01) {
            throw Check.fail("not a single-object frame (no C3 01 header)");
        }
        return ByteBuffer.wrap(frame, 2, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
    }
}
