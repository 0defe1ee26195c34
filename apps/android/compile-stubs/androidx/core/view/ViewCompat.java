// Compile-only stub for apps/android (tests/test_apps_compile.py): signature as in androidx.core 1.15 (Java); bodies throw.
package androidx.core.view;
public class ViewCompat {
    public static void setOnApplyWindowInsetsListener(android.view.View v, OnApplyWindowInsetsListener listener) { throw new RuntimeException("Stub!"); }
}
