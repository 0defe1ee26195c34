// Compile-only stub for apps/android (tests/test_apps_compile.py): signatures copied from google-ai-edge/LiteRT
// f67457790c9c (the newest stored, after v2.2.0), litert/kotlin/src/main/kotlin/com/google/ai/edge/litert/; bodies throw.
package com.google.ai.edge.litert

import android.content.res.AssetManager

class CompiledModel private constructor(handle: Long) : JniHandle(handle) {
    class Options constructor(internal val accelerators: Set<Accelerator>) {
        constructor(vararg accelerators: Accelerator) : this(setOf(*accelerators))
        companion object {
            @JvmStatic val CPU = Options(Accelerator.CPU)
        }
    }

    @Throws(LiteRtException::class) @JvmOverloads
    fun createInputBuffers(signatureIndex: Int = 0): List<TensorBuffer> = throw RuntimeException("Stub!")
    @Throws(LiteRtException::class)
    fun createInputBuffers(signature: String): List<TensorBuffer> = throw RuntimeException("Stub!")
    @Throws(LiteRtException::class) @JvmOverloads
    fun createOutputBuffers(signatureIndex: Int = 0): List<TensorBuffer> = throw RuntimeException("Stub!")
    @Throws(LiteRtException::class)
    fun createOutputBuffers(signature: String): List<TensorBuffer> = throw RuntimeException("Stub!")
    @Throws(LiteRtException::class) @JvmOverloads
    fun run(inputs: List<TensorBuffer>, signatureIndex: Int = 0): List<TensorBuffer> = throw RuntimeException("Stub!")
    @Throws(LiteRtException::class) @JvmOverloads
    fun run(inputs: List<TensorBuffer>, outputs: List<TensorBuffer>, signatureIndex: Int = 0): Unit =
        throw RuntimeException("Stub!")
    override fun destroy(): Unit = throw RuntimeException("Stub!")

    companion object {
        @Throws(LiteRtException::class) @JvmOverloads @JvmStatic
        fun create(assetManager: AssetManager, assetName: String, options: Options = Options.CPU,
                   optionalEnv: Environment? = null): CompiledModel = throw RuntimeException("Stub!")
        @Throws(LiteRtException::class) @JvmOverloads @JvmStatic
        fun create(filePath: String, options: Options = Options.CPU, optionalEnv: Environment? = null): CompiledModel =
            throw RuntimeException("Stub!")
    }
}
