package org.sr2bit.upscaler.core

import kotlin.math.min

/**
 * Overlapping tiles and seamless blending, exactly as sr2bit's srcore/tiling.py specifies them.
 *
 * The golden vectors in apps/golden/vectors.json (written by `python -m pipeline.golden`) pin this
 * file to the Python implementation; GoldenVectorsTest fails if either side changes alone.
 */

/** One tile in LR pixels, half-open: rows [y0, y1), columns [x0, x1). */
data class Tile(val y0: Int, val x0: Int, val y1: Int, val x1: Int) {
    val height: Int get() = y1 - y0
    val width: Int get() = x1 - x0
}

/** Tile starts are multiples of SwinIR's 8 px window, as srcore/tiling.py's TILE_ALIGN: tiles keep the image's windows. */
const val TILE_ALIGN = 8

private fun starts(n: Int, tile: Int, overlap: Int, align: Int): List<Int> {
    if (n <= tile) return listOf(0)
    val a = if (tile - overlap >= align) align else 1
    val result = (0 until n - tile step (tile - overlap) / a * a).toMutableList()
    result.add((n - tile + a - 1) / a * a)
    return result
}

/**
 * Row-major tiles of at most min(tile, h) x min(tile, w) covering an h x w image, stride tile - overlap rounded down
 * to a multiple of [align]; the last row and column end on the border at an aligned start, up to align - 1 px short.
 */
fun tilePlan(h: Int, w: Int, tile: Int, overlap: Int, align: Int = TILE_ALIGN): List<Tile> {
    require(h >= 1 && w >= 1) { "image must be at least 1x1, got ${w}x$h" }
    require(tile >= 1 && overlap >= 0 && overlap < tile) { "need 0 <= overlap < tile, got tile=$tile overlap=$overlap" }
    require(align >= 1) { "align must be >= 1, got $align" }
    return starts(h, tile, overlap, align).flatMap { y ->
        starts(w, tile, overlap, align).map { x -> Tile(y, x, min(y + tile, h), min(x + tile, w)) }
    }
}

/** Blending weights along one axis (SR pixels): ramps of width overlapSr / 2 that start overlapSr / 4 from an inner edge. */
fun edgeWeights(length: Int, innerStart: Boolean, innerEnd: Boolean, overlapSr: Int): FloatArray {
    require(length >= 1 && overlapSr >= 0) { "length >= 1 and overlapSr >= 0 required" }
    fun ramp(d: Double) = ((d - overlapSr / 4.0) / (overlapSr / 2.0)).coerceIn(0.0, 1.0)
    return FloatArray(length) { i ->
        var w = 1.0
        if (overlapSr > 0) {
            val d = i + 0.5
            if (innerStart) w *= ramp(d)
            if (innerEnd) w *= ramp(length - d)
        }
        w.toFloat()
    }
}

/**
 * Upscales a CHW float image tile by tile and blends the tiles: out = sum(w * tile) / sum(w).
 *
 * [upscaleTile] gets a CHW tile (channels, tile.height, tile.width) and returns it upscaled by
 * [scale] (CHW, channels, height * scale, width * scale). [onTile] is called after each tile.
 */
fun upscaleTiled(
    lr: FloatArray, channels: Int, h: Int, w: Int, scale: Int, tile: Int, overlap: Int,
    onTile: (Int, Int) -> Unit = { _, _ -> },
    upscaleTile: (FloatArray, Tile) -> FloatArray,
): FloatArray {
    require(lr.size == channels * h * w) { "lr has ${lr.size} values, expected $channels x $h x $w" }
    val plan = tilePlan(h, w, tile, overlap)
    val outH = h * scale
    val outW = w * scale
    val num = FloatArray(channels * outH * outW)
    val den = FloatArray(outH * outW)
    val overlapSr = overlap * scale
    plan.forEachIndexed { index, t ->
        accumulateTile(lr, 0, h, t, channels, h, w, scale, overlapSr, num, den, outH, 0, upscaleTile)
        onTile(index + 1, plan.size)
    }
    for (c in 0 until channels) for (p in 0 until outH * outW) num[c * outH * outW + p] /= den[p]
    return num
}

/**
 * Crops tile [t] out of [src] (CHW, [srcRows] LR rows from row [srcY0], width [w]), upscales it and adds it, weighted
 * by [edgeWeights], into [num] (channel planes of [planeRows] SR rows) and [den], whose row 0 is SR row [accStart].
 * The whole-frame and the band-by-band paths share it, so their sums are the same operations in the same order.
 */
internal fun accumulateTile(
    src: FloatArray, srcY0: Int, srcRows: Int, t: Tile, channels: Int, h: Int, w: Int, scale: Int, overlapSr: Int,
    num: FloatArray, den: FloatArray, planeRows: Int, accStart: Int, upscaleTile: (FloatArray, Tile) -> FloatArray,
) {
    val input = FloatArray(channels * t.height * t.width)
    for (c in 0 until channels) for (y in 0 until t.height) {
        System.arraycopy(src, (c * srcRows + t.y0 - srcY0 + y) * w + t.x0, input, (c * t.height + y) * t.width, t.width)
    }
    val out = upscaleTile(input, t)
    val th = t.height * scale
    val tw = t.width * scale
    require(out.size == channels * th * tw) { "upscaleTile returned ${out.size} values, expected ${channels * th * tw}" }
    val wy = edgeWeights(th, t.y0 > 0, t.y1 < h, overlapSr)
    val wx = edgeWeights(tw, t.x0 > 0, t.x1 < w, overlapSr)
    val outW = w * scale
    for (y in 0 until th) for (x in 0 until tw) {
        val weight = wy[y] * wx[x]
        val pixel = (t.y0 * scale + y - accStart) * outW + t.x0 * scale + x
        den[pixel] += weight
        for (c in 0 until channels) num[c * planeRows * outW + pixel] += out[(c * th + y) * tw + x] * weight
    }
}

/** Pads a CHW tile to size x size by mirroring (the pipeline's mirror_pad: edge pixel repeated). */
fun mirrorPad(chw: FloatArray, channels: Int, h: Int, w: Int, size: Int): FloatArray {
    require(h <= size && w <= size) { "a ${w}x$h tile does not fit a ${size}x$size input" }
    fun mirror(i: Int, n: Int): Int {  // cat([x, flip(x)]) until >= size: undo the doublings, largest first
        val lengths = generateSequence(n) { it * 2 }.takeWhile { it < size }.toList()
        var j = i
        for (length in lengths.asReversed()) if (j >= length) j = 2 * length - 1 - j
        return j
    }
    val out = FloatArray(channels * size * size)
    for (c in 0 until channels) for (y in 0 until size) for (x in 0 until size) {
        out[(c * size + y) * size + x] = chw[(c * h + mirror(y, h)) * w + mirror(x, w)]
    }
    return out
}
