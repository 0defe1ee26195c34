// Compile-only stub for apps/android (tests/test_apps_compile.py): signature as in the Android SDK (API 35); bodies throw.
package android.util;
public final class Log {
    public static int e(String tag, String msg, Throwable tr) { throw new RuntimeException("Stub!"); }
    public static int i(String tag, String msg) { throw new RuntimeException("Stub!"); }
}
