// Compile-only stub for apps/android (tests/test_apps_compile.py): signatures copied from pytorch/executorch
// cff6f4dd32e6 (1.5.0 development, the newest stored; 1.4.1 is the same for these calls),
// extension/android/executorch_android/src/main/java/org/pytorch/executorch/; bodies throw.
package org.pytorch.executorch

abstract class Tensor internal constructor(shape: LongArray) {
    fun shape(): LongArray = throw RuntimeException("Stub!")
    open val dataAsFloatArray: FloatArray get() = throw RuntimeException("Stub!")
    open val dataAsIntArray: IntArray get() = throw RuntimeException("Stub!")
    open val dataAsByteArray: ByteArray get() = throw RuntimeException("Stub!")

    companion object {
        @JvmStatic fun fromBlob(data: ByteArray, shape: LongArray): Tensor = throw RuntimeException("Stub!")
        @JvmStatic fun fromBlob(data: IntArray, shape: LongArray): Tensor = throw RuntimeException("Stub!")
        @JvmStatic fun fromBlob(data: FloatArray, shape: LongArray): Tensor = throw RuntimeException("Stub!")
        @JvmStatic fun fromBlob(data: LongArray, shape: LongArray): Tensor = throw RuntimeException("Stub!")
        @JvmStatic fun fromBlob(data: java.nio.FloatBuffer, shape: LongArray): Tensor = throw RuntimeException("Stub!")
    }
}
