package org.sr2bit.upscaler.core

import kotlin.math.round

/** Android Bitmap.getPixels ints (0xAARRGGBB, row-major) to float CHW RGB in [0, 1]; alpha is dropped. */
fun argbToChw(argb: IntArray, width: Int, height: Int): FloatArray {
    require(argb.size == width * height) { "expected ${width * height} pixels, got ${argb.size}" }
    val plane = width * height
    val out = FloatArray(3 * plane)
    for (i in 0 until plane) {
        val p = argb[i]
        out[i] = ((p ushr 16) and 0xFF) / 255f
        out[plane + i] = ((p ushr 8) and 0xFF) / 255f
        out[2 * plane + i] = (p and 0xFF) / 255f
    }
    return out
}

/** The same pixels as NHWC (TFLite's layout): r, g, b per pixel. */
fun argbToNhwc(argb: IntArray, width: Int, height: Int): FloatArray {
    val chw = argbToChw(argb, width, height)
    val plane = width * height
    return FloatArray(3 * plane) { i -> chw[(i % 3) * plane + i / 3] }
}

/** Float to an 8-bit level like the pipeline: NaN -> 0, clamp to [0, 1], then round(x * 255) half to even in float32. */
fun toLevel(value: Float): Int {
    if (value.isNaN()) return 0
    return round(value.coerceIn(0f, 1f) * 255f).toInt()  // kotlin.math.round: ties to even
}

/** Float CHW RGB to opaque ARGB ints for Bitmap.setPixels. */
fun chwToArgb(chw: FloatArray, width: Int, height: Int): IntArray {
    val plane = width * height
    require(chw.size == 3 * plane) { "expected ${3 * plane} values, got ${chw.size}" }
    return IntArray(plane) { i ->
        (0xFF shl 24) or (toLevel(chw[i]) shl 16) or (toLevel(chw[plane + i]) shl 8) or toLevel(chw[2 * plane + i])
    }
}
