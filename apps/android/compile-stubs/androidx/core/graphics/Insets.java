// Compile-only stub for apps/android (tests/test_apps_compile.py): signature as in androidx.core 1.15 (Java); bodies throw.
package androidx.core.graphics;
public final class Insets {
    public final int left = 0, top = 0, right = 0, bottom = 0;
}
