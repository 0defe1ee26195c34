// Compile-only stub for apps/android (tests/test_apps_compile.py): signatures copied from google-ai-edge/LiteRT
// f67457790c9c (the newest stored, after v2.2.0), litert/kotlin/src/main/kotlin/com/google/ai/edge/litert/; bodies throw.
package com.google.ai.edge.litert

class TensorBuffer internal constructor(handle: Long) : JniHandle(handle) {
    @Throws(LiteRtException::class) fun writeInt(data: IntArray): Unit = throw RuntimeException("Stub!")
    @Throws(LiteRtException::class) fun writeFloat(data: FloatArray): Unit = throw RuntimeException("Stub!")
    @Throws(LiteRtException::class) fun writeInt8(data: ByteArray): Unit = throw RuntimeException("Stub!")
    @Throws(LiteRtException::class) fun readInt(): IntArray = throw RuntimeException("Stub!")
    @Throws(LiteRtException::class) fun readFloat(): FloatArray = throw RuntimeException("Stub!")
    @Throws(LiteRtException::class) fun readInt8(): ByteArray = throw RuntimeException("Stub!")
    override fun destroy(): Unit = throw RuntimeException("Stub!")
}
