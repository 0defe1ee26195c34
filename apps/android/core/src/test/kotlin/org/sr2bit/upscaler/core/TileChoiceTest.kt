package org.sr2bit.upscaler.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test

/** The app's tile choice against what pipeline upscale printed for the same photo (reports/upscale_photo.md). */
class TileChoiceTest {
    private val generous = 1L shl 40

    @Test
    fun overlapFollowsThePythonDefault() {
        // srcore.tiling.default_overlap: 16 from 64 px up, a quarter below.
        assertEquals(listOf(4, 8, 12, 16, 16, 16), listOf(16, 32, 48, 64, 128, 192).map(::defaultOverlap))
    }

    @Test
    fun methodsNameTheirTileSide() {
        assertEquals(64, methodTileSide("forward", 64))
        assertEquals(128, methodTileSide("tile_128", 64))
        assertNull(methodTileSide("tile_x", 64))
        assertNull(methodTileSide("tile_0", 64))
        assertNull(methodTileSide("get_scale", 64))
    }

    @Test
    fun theFastestTotalWinsWithTheTileCountsPipelineUpscalePrinted() {
        // 2000x1500 at x4: `pipeline upscale` printed 1302 tiles of 64 px and 252 of 128 px (overlap 16).
        val speeds = mapOf(64 to 52.0, 128 to 199.0)
        val chosen = chooseTile(tileOptions(speeds, 2000, 1500, 4, generous, 2048))
        assertEquals(128, chosen.tile)
        assertEquals(252, chosen.tiles)
        assertEquals(16, chosen.overlap)
        assertEquals(252 * 199.0, chosen.millis, 1e-9)
        val slow128 = chooseTile(tileOptions(mapOf(64 to 52.0, 128 to 300.0), 2000, 1500, 4, generous, 2048))
        assertEquals(64, slow128.tile)
        assertEquals(1302, slow128.tiles)
    }

    @Test
    fun aSmallPhotoTiesAndTakesTheSmallerTile() {
        // A 40x30 photo is one tile at any side: equal times, the smaller tile.
        assertEquals(64, chooseTile(tileOptions(mapOf(128 to 10.0, 64 to 10.0), 40, 30, 4, generous, 2048)).tile)
    }

    @Test
    fun theMemoryBudgetExcludesLargeTiles() {
        val speeds = mapOf(64 to 52.0, 128 to 199.0)
        // The Swift core's streamedBytes asserts the same bytes (TileChoiceTests): the README's 89 MB at 12 MP.
        assertEquals(88_571_904L, streamedBytes(4032, 3024, 4, 64, 2048))
        val need64 = streamedBytes(2000, 1500, 4, 64, 2048)
        val need128 = streamedBytes(2000, 1500, 4, 128, 2048)
        assertTrue(need64 < need128)
        assertEquals(64, chooseTile(tileOptions(speeds, 2000, 1500, 4, need64, 2048)).tile)
        val error = assertThrows(IllegalArgumentException::class.java) { chooseTile(tileOptions(speeds, 2000, 1500, 4, need64 - 1, 2048)) }
        assertTrue(error.message!!, error.message!!.contains("smallest need is 64 px"))
        assertThrows(IllegalArgumentException::class.java) { chooseTile(tileOptions(emptyMap(), 2000, 1500, 4, generous, 2048)) }
    }
}
