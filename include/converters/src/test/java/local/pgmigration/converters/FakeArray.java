package local.pgmigration.converters;

import java.lang.reflect.Proxy;
import java.sql.Array;

/** A java.sql.Array whose toString() is the given text, like the driver's PgArray built from text. */
final class FakeArray {
    private FakeArray() {
    }

    static Array of(String text) {
        return (Array) Proxy.newProxyInstance(Array.class.getClassLoader(), new Class<?>[]{ Array.class },
                (proxy, method, args) -> {
                    if (method.getName().equals("toString")) {
                        return text;
                    }
                    throw new UnsupportedOperationException(method.getName());
                });
    }
}
