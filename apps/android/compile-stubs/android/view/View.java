// Compile-only stub for apps/android (tests/test_apps_compile.py): signature as in the Android SDK (API 35); bodies throw.
package android.view;
public class View {
    public interface OnClickListener { void onClick(View v); }
    public void setOnClickListener(OnClickListener l) { throw new RuntimeException("Stub!"); }
    public void setPadding(int left, int top, int right, int bottom) { throw new RuntimeException("Stub!"); }
    public boolean isEnabled() { throw new RuntimeException("Stub!"); }
    public void setEnabled(boolean enabled) { throw new RuntimeException("Stub!"); }
}
