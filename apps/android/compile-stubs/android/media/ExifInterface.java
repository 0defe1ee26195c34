// Compile-only stub for apps/android (tests/test_apps_compile.py): signature as in the Android SDK (API 35); bodies throw.
package android.media;
public class ExifInterface {
    public static final String TAG_ORIENTATION = "Orientation";
    public static final int ORIENTATION_NORMAL = 1;
    public ExifInterface(java.io.InputStream inputStream) throws java.io.IOException { throw new RuntimeException("Stub!"); }
    public int getAttributeInt(String tag, int defaultValue) { throw new RuntimeException("Stub!"); }
}
