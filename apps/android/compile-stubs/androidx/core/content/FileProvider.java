// Compile-only stub for apps/android (tests/test_apps_compile.py): signature as in androidx.core 1.15 (Java); bodies throw.
package androidx.core.content;
public class FileProvider {
    public static android.net.Uri getUriForFile(android.content.Context context, String authority, java.io.File file) { throw new RuntimeException("Stub!"); }
}
