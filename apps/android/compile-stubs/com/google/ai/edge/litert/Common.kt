// Compile-only stub for apps/android (tests/test_apps_compile.py): signatures copied from google-ai-edge/LiteRT
// f67457790c9c (the newest stored, after v2.2.0), litert/kotlin/src/main/kotlin/com/google/ai/edge/litert/; bodies throw.
package com.google.ai.edge.litert

enum class Accelerator private constructor(val value: Int) { NONE(0), CPU(1), GPU(2), NPU(3) }

abstract class JniHandle internal constructor(internal val handle: Long) : AutoCloseable {
    protected abstract fun destroy()
    final override fun close(): Unit = throw RuntimeException("Stub!")
}

class LiteRtException(message: String) : Exception(message)

class Environment private constructor(handle: Long) : JniHandle(handle) {
    override fun destroy(): Unit = throw RuntimeException("Stub!")
}
