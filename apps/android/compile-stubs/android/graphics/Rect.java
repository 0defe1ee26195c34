// Compile-only stub for apps/android (tests/test_apps_compile.py): signature as in the Android SDK (API 35); bodies throw.
package android.graphics;
public final class Rect {
    public Rect(int left, int top, int right, int bottom) { throw new RuntimeException("Stub!"); }
}
