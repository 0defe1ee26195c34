// Compile-only stub for apps/android (tests/test_apps_compile.py): signature as in the Android SDK (API 35); bodies throw.
package android.content.pm;
public abstract class PackageManager {
    public static class NameNotFoundException extends Exception {}
    @Deprecated
    public abstract PackageInfo getPackageInfo(String packageName, int flags) throws NameNotFoundException;
}
