// Compile-only stub for apps/android (tests/test_apps_compile.py): signature as in the Android SDK (API 35); bodies throw.
package android.content;
public abstract class Context {
    public android.content.res.AssetManager getAssets() { throw new RuntimeException("Stub!"); }
    public java.io.File getCacheDir() { throw new RuntimeException("Stub!"); }
    public java.io.File getFilesDir() { throw new RuntimeException("Stub!"); }
    public ContentResolver getContentResolver() { throw new RuntimeException("Stub!"); }
    public android.content.pm.PackageManager getPackageManager() { throw new RuntimeException("Stub!"); }
    public String getPackageName() { throw new RuntimeException("Stub!"); }
    public final String getString(int resId) { throw new RuntimeException("Stub!"); }
    public void startActivity(Intent intent) { throw new RuntimeException("Stub!"); }
}
