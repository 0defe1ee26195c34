// Compile-only stub for apps/android (tests/test_apps_compile.py): signature as in the Android SDK (API 35); bodies throw.
package android.content;
public class Intent {
    public static final String ACTION_SEND = "android.intent.action.SEND";
    public static final String EXTRA_STREAM = "android.intent.extra.STREAM";
    public static final int FLAG_GRANT_READ_URI_PERMISSION = 1;
    public Intent(String action) { throw new RuntimeException("Stub!"); }
    public Intent setType(String type) { throw new RuntimeException("Stub!"); }
    public Intent putExtra(String name, android.os.Parcelable value) { throw new RuntimeException("Stub!"); }
    public Intent addFlags(int flags) { throw new RuntimeException("Stub!"); }
    public static Intent createChooser(Intent target, CharSequence title) { throw new RuntimeException("Stub!"); }
}
