import XCTest
@testable import UpscalerCore

/// The tile choice against what pipeline upscale printed for the same photo (the Android core's TileChoiceTest, ported).
final class TileChoiceTests: XCTestCase {
    let generous = 1 << 40

    func testOverlapFollowsThePythonDefault() {
        XCTAssertEqual([16, 32, 48, 64, 128, 192].map(defaultOverlap), [4, 8, 12, 16, 16, 16])
    }

    func testFunctionsNameTheirTileSide() {
        XCTAssertEqual(functionTileSide("main", defaultTile: 64), 64)
        XCTAssertEqual(functionTileSide("tile_128", defaultTile: 64), 128)
        XCTAssertNil(functionTileSide("tile_x", defaultTile: 64))
        XCTAssertNil(functionTileSide("tile_0", defaultTile: 64))
        XCTAssertNil(functionTileSide("other", defaultTile: 64))
    }

    func testTheFastestTotalWinsWithTheTileCountsPipelineUpscalePrinted() {
        // 2000x1500 at x4: `pipeline upscale` printed 1302 tiles of 64 px and 252 of 128 px (overlap 16).
        let chosen = chooseTile(tileOptions(secondsPerTile: [64: 0.052, 128: 0.199], w: 2000, h: 1500, scale: 4,
                                            maxBytes: generous, previewSide: 2048))
        XCTAssertEqual(chosen?.tile, 128)
        XCTAssertEqual(chosen?.tiles, 252)
        XCTAssertEqual(chosen?.overlap, 16)
        let slow128 = chooseTile(tileOptions(secondsPerTile: [64: 0.052, 128: 0.3], w: 2000, h: 1500, scale: 4,
                                             maxBytes: generous, previewSide: 2048))
        XCTAssertEqual(slow128?.tile, 64)
        XCTAssertEqual(slow128?.tiles, 1302)
    }

    func testASmallPhotoTiesAndTakesTheSmallerTile() {
        let chosen = chooseTile(tileOptions(secondsPerTile: [128: 0.01, 64: 0.01], w: 40, h: 30, scale: 4,
                                            maxBytes: generous, previewSide: 2048))
        XCTAssertEqual(chosen?.tile, 64)
    }

    func testTheMemoryBudgetExcludesLargeTiles() {
        // The Android core's streamedBytes to the byte (TileChoiceTest): the README's 89 MB for 12 MP at x4, 64 px tiles.
        XCTAssertEqual(streamedBytes(w: 4032, h: 3024, scale: 4, tile: 64, previewSide: 2048), 88_571_904)
        let need64 = streamedBytes(w: 2000, h: 1500, scale: 4, tile: 64, previewSide: 2048)
        let speeds = [64: 0.052, 128: 0.199]
        XCTAssertEqual(chooseTile(tileOptions(secondsPerTile: speeds, w: 2000, h: 1500, scale: 4, maxBytes: need64,
                                              previewSide: 2048))?.tile, 64)
        XCTAssertNil(chooseTile(tileOptions(secondsPerTile: speeds, w: 2000, h: 1500, scale: 4, maxBytes: need64 - 1,
                                            previewSide: 2048)))
    }
}
