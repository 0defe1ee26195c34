// Compile-only stub for apps/android (tests/test_apps_compile.py): signature as in the Android SDK (API 35); bodies throw.
package android.os;
public class Build {
    public static class VERSION { public static final int SDK_INT = 0; }
}
