// Compile-only stub for apps/android (tests/test_apps_compile.py): signatures as in androidx.activity 1.9 (Kotlin); bodies throw.
package androidx.activity

import androidx.activity.result.ActivityResultCallback
import androidx.activity.result.ActivityResultLauncher
import androidx.activity.result.contract.ActivityResultContract

open class ComponentActivity : android.app.Activity() {
    fun <I, O> registerForActivityResult(
        contract: ActivityResultContract<I, O>,
        callback: ActivityResultCallback<O>,
    ): ActivityResultLauncher<I> = throw RuntimeException("Stub!")
}

class SystemBarStyle private constructor()

@JvmName("enable")
fun ComponentActivity.enableEdgeToEdge(
    statusBarStyle: SystemBarStyle? = null,
    navigationBarStyle: SystemBarStyle? = null,
): Unit = throw RuntimeException("Stub!")
