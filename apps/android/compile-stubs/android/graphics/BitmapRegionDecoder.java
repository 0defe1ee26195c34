// Compile-only stub for apps/android (tests/test_apps_compile.py): signature as in the Android SDK (API 35); bodies throw.
package android.graphics;
public final class BitmapRegionDecoder {
    public static BitmapRegionDecoder newInstance(java.io.InputStream is) throws java.io.IOException { throw new RuntimeException("Stub!"); }
    @Deprecated
    public static BitmapRegionDecoder newInstance(java.io.InputStream is, boolean isShareable) throws java.io.IOException { throw new RuntimeException("Stub!"); }
    public Bitmap decodeRegion(Rect rect, BitmapFactory.Options options) { throw new RuntimeException("Stub!"); }
    public int getWidth() { throw new RuntimeException("Stub!"); }
    public int getHeight() { throw new RuntimeException("Stub!"); }
    public void recycle() { throw new RuntimeException("Stub!"); }
}
