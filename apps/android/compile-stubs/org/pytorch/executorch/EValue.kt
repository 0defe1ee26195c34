// Compile-only stub for apps/android (tests/test_apps_compile.py): signatures copied from pytorch/executorch
// cff6f4dd32e6 (1.5.0 development, the newest stored; 1.4.1 is the same for these calls),
// extension/android/executorch_android/src/main/java/org/pytorch/executorch/; bodies throw.
package org.pytorch.executorch

class EValue private constructor(private val typeCode: Int) {
    fun toTensor(): Tensor = throw RuntimeException("Stub!")
    fun toDouble(): Double = throw RuntimeException("Stub!")

    companion object {
        @JvmStatic fun from(tensor: Tensor): EValue = throw RuntimeException("Stub!")
        @JvmStatic fun from(value: Boolean): EValue = throw RuntimeException("Stub!")
        @JvmStatic fun from(value: Long): EValue = throw RuntimeException("Stub!")
        @JvmStatic fun from(value: Double): EValue = throw RuntimeException("Stub!")
        @JvmStatic fun from(value: String): EValue = throw RuntimeException("Stub!")
    }
}
