// Compile-only stub for apps/android (tests/test_apps_compile.py): signature as in the Android SDK (API 35); bodies throw.
package android.os;
public final class Bundle {}
