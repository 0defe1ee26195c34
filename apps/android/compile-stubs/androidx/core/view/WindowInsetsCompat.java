// Compile-only stub for apps/android (tests/test_apps_compile.py): signature as in androidx.core 1.15 (Java); bodies throw.
package androidx.core.view;
public class WindowInsetsCompat {
    public static final WindowInsetsCompat CONSUMED = null;
    public androidx.core.graphics.Insets getInsets(int typeMask) { throw new RuntimeException("Stub!"); }
    public static final class Type {
        public static int systemBars() { throw new RuntimeException("Stub!"); }
        public static int displayCutout() { throw new RuntimeException("Stub!"); }
    }
}
