package contract;

import java.nio.ByteBuffer;
import org.apache.avro.generic.GenericEnumSymbol;

/** Avro's generic values (Utf8, enum symbols, Integer) as plain Java values for comparing and printing. */
final class Text {
    private Text() {}

    static String str(Object value) {
        return value == null ? null : value.toString();
    }

    static Object of(Object value) {
        if (value instanceof CharSequence || value instanceof GenericEnumSymbol<?>) {
            return value.toString();
        }
        if (value instanceof Integer i) {
            return i.longValue();
        }
        if (value == null || value instanceof Long || value instanceof Boolean) {
            return value;
        }
        if (value instanceof ByteBuffer) {
            throw Check.fail("bytes fields are not part of this contract");
        }
        throw Check.fail("unexpected Avro value of type " + value.getClass().getName());
    }
}
