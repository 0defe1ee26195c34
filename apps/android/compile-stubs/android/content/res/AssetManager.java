// Compile-only stub for apps/android (tests/test_apps_compile.py): signature as in the Android SDK (API 35); bodies throw.
package android.content.res;
public final class AssetManager implements AutoCloseable {
    public java.io.InputStream open(String fileName) throws java.io.IOException { throw new RuntimeException("Stub!"); }
    public void close() { throw new RuntimeException("Stub!"); }
}
