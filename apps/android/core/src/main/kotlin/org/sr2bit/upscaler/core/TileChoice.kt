package org.sr2bit.upscaler.core

import kotlin.math.min

/**
 * Which of an artifact's tile sides a photo goes through, as `pipeline upscale` decides it (pipeline/tile_choice.py):
 * the fastest predicted total whose memory fits. The time of one tile is measured on the phone itself, since a
 * build host's speeds say nothing of a phone's.
 */

/** LR overlap between tiles, as srcore/tiling.py's SEAM_OVERLAP: seams depend on the model's receptive field. */
const val SEAM_OVERLAP = 16

/** The overlap of a tile side, as srcore/tiling.py's default_overlap: [SEAM_OVERLAP], or a quarter of a smaller tile. */
fun defaultOverlap(tile: Int): Int {
    require(tile >= 1) { "tile must be at least 1, got $tile" }
    return min(SEAM_OVERLAP, tile / 4)
}

/**
 * The LR tile side an ExecuTorch method runs: `forward` the build's own [defaultTile], `tile_<n>` n (one method per
 * `pipeline build --tiles` size); null for any other method.
 */
fun methodTileSide(method: String, defaultTile: Int): Int? = when {
    method == "forward" -> defaultTile
    method.startsWith("tile_") -> method.removePrefix("tile_").toIntOrNull()?.takeIf { it > 0 }
    else -> null
}

/** One tile side for one photo: its plan, predicted time and the streamed path's memory ([streamedBytes]). */
data class TileOption(val tile: Int, val overlap: Int, val tiles: Int, val millis: Double, val bytes: Long, val fits: Boolean) {
    fun describe(): String = "$tile px: $tiles tiles (overlap $overlap), about ${"%.1f".format(millis / 1000)} s, " +
        "${bytes / (1 shl 20)} MB" + if (fits) "" else " (over the budget)"
}

/**
 * Every tile side of [msPerTile] for a w x h LR photo, smallest first: its [tilePlan] (overlap [defaultOverlap]), the
 * predicted time (tiles times [msPerTile] of that side) and whether its streamed memory fits [maxBytes].
 */
fun tileOptions(msPerTile: Map<Int, Double>, w: Int, h: Int, scale: Int, maxBytes: Long, previewSide: Int): List<TileOption> =
    msPerTile.toSortedMap().map { (tile, ms) ->
        val overlap = defaultOverlap(tile)
        val count = tilePlan(h, w, tile, overlap).size
        val bytes = streamedBytes(w, h, scale, tile, previewSide)
        TileOption(tile, overlap, count, count * ms, bytes, bytes <= maxBytes)
    }

/**
 * The fastest of [options] whose memory fits; ties go to the smaller tile.
 *
 * @throws IllegalArgumentException when there is no option or none fits (naming the smallest need).
 */
fun chooseTile(options: List<TileOption>): TileOption {
    require(options.isNotEmpty()) { "no tile side to choose from" }
    val fitting = options.filter { it.fits }
    require(fitting.isNotEmpty()) {
        "no tile side fits the memory budget: the smallest need is ${options.minBy { it.bytes }.describe()}"
    }
    return fitting.minWith(compareBy<TileOption>({ it.millis }, { it.tile }))
}
