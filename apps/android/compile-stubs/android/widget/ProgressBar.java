// Compile-only stub for apps/android (tests/test_apps_compile.py): signature as in the Android SDK (API 35); bodies throw.
package android.widget;
public class ProgressBar extends android.view.View {
    public synchronized int getMax() { throw new RuntimeException("Stub!"); }
    public synchronized void setMax(int max) { throw new RuntimeException("Stub!"); }
    public synchronized int getProgress() { throw new RuntimeException("Stub!"); }
    public synchronized void setProgress(int progress) { throw new RuntimeException("Stub!"); }
}
