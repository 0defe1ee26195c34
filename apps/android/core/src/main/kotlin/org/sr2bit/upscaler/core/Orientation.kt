package org.sr2bit.upscaler.core

import kotlin.math.max
import kotlin.math.min

/**
 * EXIF orientation (TIFF tag 274, values 1-8) for images decoded region by region.
 *
 * Why: BitmapRegionDecoder returns the stored pixels, not the upright photo, so a portrait shot from a phone
 * camera (stored landscape with orientation 6) would come out on its side. The app works in display
 * coordinates: for a band of display rows, [rawRect] says which stored rectangle to decode and [toDisplay]
 * turns the decoded pixels upright.
 *
 * Display pixel (x, y) comes from stored pixel [rawPoint] (x, y) of a rawW x rawH image:
 * 1 as is, 2 mirrored left-right, 3 rotated 180, 4 mirrored top-bottom, 5 transposed, 6 rotated 90 degrees
 * clockwise, 7 transversed, 8 rotated 90 degrees counter-clockwise. Unknown values are treated as 1.
 */
class Orientation(val exif: Int, val rawW: Int, val rawH: Int) {
    private val code = if (exif in 1..8) exif else 1
    private val swaps = code >= 5

    val width: Int get() = if (swaps) rawH else rawW
    val height: Int get() = if (swaps) rawW else rawH

    /** The stored pixel (x, y) shown at display pixel (x, y). */
    fun rawPoint(x: Int, y: Int): Pair<Int, Int> = when (code) {
        2 -> (rawW - 1 - x) to y
        3 -> (rawW - 1 - x) to (rawH - 1 - y)
        4 -> x to (rawH - 1 - y)
        5 -> y to x
        6 -> y to (rawH - 1 - x)
        7 -> (rawW - 1 - y) to (rawH - 1 - x)
        8 -> (rawW - 1 - y) to x
        else -> x to y
    }

    /** The stored rectangle [left, top, right, bottom) holding display rows [y0, y0 + rows), all columns. */
    fun rawRect(y0: Int, rows: Int): IntArray {
        val (ax, ay) = rawPoint(0, y0)
        val (bx, by) = rawPoint(width - 1, y0 + rows - 1)
        return intArrayOf(min(ax, bx), min(ay, by), max(ax, bx) + 1, max(ay, by) + 1)
    }

    /** Display rows [y0, y0 + rows) (ARGB, rows x [width]) from the decoded [rawRect] pixels (row-major). */
    fun toDisplay(y0: Int, rows: Int, decoded: IntArray): IntArray {
        val rect = rawRect(y0, rows)
        val stride = rect[2] - rect[0]
        require(decoded.size == stride * (rect[3] - rect[1])) { "decoded ${decoded.size} pixels for a rect of ${rect.toList()}" }
        val out = IntArray(rows * width)
        for (y in 0 until rows) for (x in 0 until width) {
            val (rx, ry) = rawPoint(x, y0 + y)
            out[y * width + x] = decoded[(ry - rect[1]) * stride + rx - rect[0]]
        }
        return out
    }
}
