package org.sr2bit.upscaler.core

import kotlin.math.max
import kotlin.math.min

/**
 * The tile plan and blending of [upscaleTiled], streamed: the LR image is read one band of tile rows at a time
 * and each SR row is written out as soon as no later tile can touch it, so memory grows with the image width,
 * not its area.
 *
 * Why: a whole-frame accumulator holds 3 floats of numerator and 1 of denominator per SR pixel, 16 SR pixels per
 * LR pixel at x4: 256 B per input pixel, 272 B with the input copies, 3.3 GB for a 12 MP photo
 * ([wholeFrameBytes]). Here the accumulator holds
 * one tile height of SR rows: (channels + 1) * 4 B * tile * scale * w * scale, 66 MB for a 4032 px wide
 * photo at 64 px tiles and x4 (see [streamedBytes]).
 *
 * The arithmetic is the same as upscaleTiled's, in the same order (tiles row-major, den += w and
 * num += out * w per tile, then num / den), so the result is bit-identical; StreamingTest checks it.
 */

/** SR rows handed to writeRows at a time: 16 rows of a 16128 px wide result are 4 MB of floats. */
const val FLUSH_ROWS = 16

/**
 * Upscales an h x w image band by band with the tile plan of [tilePlan] and the blending of [upscaleTiled].
 *
 * [readBand] (y0, rows) returns LR rows [y0, y0 + rows) as CHW floats (channels, rows, w); it is called once per
 * tile row, with rows <= tile. [writeRows] (srY0, rows, chw) receives finished SR rows in order, at most
 * [FLUSH_ROWS] at a time, in the first channels * rows * w * scale values of chw (CHW: channels, rows, w * scale);
 * the array is reused after the call returns. [upscaleTile] and [onTile] are as in
 * upscaleTiled.
 */
fun upscaleBands(
    channels: Int, h: Int, w: Int, scale: Int, tile: Int, overlap: Int,
    readBand: (Int, Int) -> FloatArray,
    writeRows: (Int, Int, FloatArray) -> Unit,
    onTile: (Int, Int) -> Unit = { _, _ -> },
    upscaleTile: (FloatArray, Tile) -> FloatArray,
) {
    val plan = tilePlan(h, w, tile, overlap)
    val outW = w * scale
    val outH = h * scale
    val capacity = min(tile, h) * scale  // SR rows one tile row spans
    val num = FloatArray(channels * capacity * outW)
    val den = FloatArray(capacity * outW)
    val overlapSr = overlap * scale
    var accStart = 0  // SR row held in accumulator row 0
    var done = 0

    val chunk = FloatArray(channels * min(FLUSH_ROWS, capacity) * outW)
    fun flush(untilRow: Int) {  // writes SR rows [accStart, untilRow), FLUSH_ROWS at a time, and shifts the rest up
        val rows = untilRow - accStart
        if (rows <= 0) return
        for (first in 0 until rows step FLUSH_ROWS) {
            val n = min(FLUSH_ROWS, rows - first)
            for (c in 0 until channels) for (p in 0 until n * outW) {
                chunk[c * n * outW + p] = num[c * capacity * outW + first * outW + p] / den[first * outW + p]
            }
            writeRows(accStart + first, n, chunk)
        }
        val keep = capacity - rows
        for (c in 0 until channels) {
            val base = c * capacity * outW
            System.arraycopy(num, base + rows * outW, num, base, keep * outW)
            num.fill(0f, base + keep * outW, base + capacity * outW)
        }
        System.arraycopy(den, rows * outW, den, 0, keep * outW)
        den.fill(0f, keep * outW, capacity * outW)
        accStart = untilRow
    }

    for (row in plan.groupBy { it.y0 }.values) {
        val y0 = row[0].y0
        val rows = row[0].height
        flush(y0 * scale)  // later tiles start at y0 or below: rows above are final
        val band = readBand(y0, rows)
        require(band.size == channels * rows * w) { "readBand returned ${band.size} values, expected $channels x $rows x $w" }
        for (t in row) {
            accumulateTile(band, y0, rows, t, channels, h, w, scale, overlapSr, num, den, capacity, accStart, upscaleTile)
            done += 1
            onTile(done, plan.size)
        }
    }
    flush(outH)
}

/**
 * Peak bytes the streamed path holds for a w x h photo, beside the model runtime and the system's decoder:
 * the LR band (ARGB ints and CHW floats), the accumulator, one chunk of SR rows (CHW floats and ARGB ints),
 * one tile's input/output/crop and the preview bitmap (longest side [previewSide]).
 */
fun streamedBytes(w: Int, h: Int, scale: Int, tile: Int, previewSide: Int): Long {
    val band = min(tile, h).toLong() * w * (4 + 3 * 4)
    val capacity = min(tile, h).toLong() * scale
    val accumulator = 4L * 4 * capacity * w * scale
    val flushRows = min(FLUSH_ROWS.toLong(), capacity) * w * scale * (3 * 4 + 4)  // CHW floats and their ARGB ints
    val side = tile.toLong() * scale
    val tileBuffers = 3L * 4 * (tile.toLong() * tile * 2 + side * side * 2)
    val preview = previewSize(w * scale, h * scale, previewSide).let { (pw, ph) -> 4L * pw * ph }
    return band + accumulator + flushRows + tileBuffers + preview
}

/** Peak heap bytes of the old whole-frame path: ARGB ints, CHW floats, num and den at SR size, ARGB result. */
fun wholeFrameBytes(w: Int, h: Int, scale: Int): Long {
    val lr = w.toLong() * h
    val sr = lr * scale * scale
    return lr * (4 + 12) + sr * (12 + 4) + sr * 4  // the result ints are allocated while num is still alive
}

/** Size of a preview whose longest side is at most [maxSide], keeping the aspect ratio (at least 1 x 1). */
fun previewSize(w: Int, h: Int, maxSide: Int): Pair<Int, Int> {
    val longest = max(w, h)
    if (longest <= maxSide) return w to h
    return max(1, (w.toLong() * maxSide / longest).toInt()) to max(1, (h.toLong() * maxSide / longest).toInt())
}

/**
 * A nearest-neighbour preview of an image written row by row: pixel (x, y) of the preview is pixel
 * (x * w / pw, y * h / ph) of the image. Only the preview's pixels are kept.
 */
class PreviewSampler(private val w: Int, private val h: Int, maxSide: Int) {
    val width: Int
    val height: Int
    val argb: IntArray

    init {
        val (pw, ph) = previewSize(w, h, maxSide)
        width = pw
        height = ph
        argb = IntArray(pw * ph)
    }

    /** Takes image rows [y0, y0 + rows) as ARGB ints (rows x w). */
    fun accept(y0: Int, rows: Int, pixels: IntArray) {
        for (py in 0 until height) {
            val y = (py.toLong() * h / height).toInt()
            if (y < y0 || y >= y0 + rows) continue
            for (px in 0 until width) argb[py * width + px] = pixels[(y - y0) * w + (px.toLong() * w / width).toInt()]
        }
    }
}
