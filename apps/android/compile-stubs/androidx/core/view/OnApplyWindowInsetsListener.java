// Compile-only stub for apps/android (tests/test_apps_compile.py): signature as in androidx.core 1.15 (Java); bodies throw.
package androidx.core.view;
public interface OnApplyWindowInsetsListener {
    WindowInsetsCompat onApplyWindowInsets(android.view.View v, WindowInsetsCompat insets);
}
