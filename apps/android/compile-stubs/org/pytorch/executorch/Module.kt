// Compile-only stub for apps/android (tests/test_apps_compile.py): signatures copied from pytorch/executorch
// cff6f4dd32e6 (1.5.0 development, the newest stored; 1.4.1 is the same for these calls),
// extension/android/executorch_android/src/main/java/org/pytorch/executorch/; bodies throw.
package org.pytorch.executorch

import java.io.Closeable

open class Module private constructor() : Closeable {
    open fun forward(vararg inputs: EValue): Array<EValue> = throw RuntimeException("Stub!")
    open fun execute(methodName: String, vararg inputs: EValue): Array<EValue> = throw RuntimeException("Stub!")
    open fun loadMethod(methodName: String): Unit = throw RuntimeException("Stub!")
    open fun getMethods(): Array<String> = throw RuntimeException("Stub!")
    open fun destroy(): Unit = throw RuntimeException("Stub!")
    override fun close() = destroy()

    companion object {
        const val LOAD_MODE_FILE = 0
        const val LOAD_MODE_MMAP = 1
        const val LOAD_MODE_MMAP_USE_MLOCK = 2
        const val LOAD_MODE_MMAP_USE_MLOCK_IGNORE_ERRORS = 3

        @JvmStatic
        @JvmOverloads
        fun load(modelPath: String?, loadMode: Int = LOAD_MODE_FILE, numThreads: Int = 0): Module =
            throw RuntimeException("Stub!")
    }
}
