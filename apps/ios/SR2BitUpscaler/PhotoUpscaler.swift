#if canImport(CoreML) && canImport(ImageIO)
import Compression
import CoreGraphics
import Foundation
import ImageIO
import UpscalerCore

/// What one upscale produced: the PNG file, small before/after previews, sizes and the time spent.
struct Upscaled: @unchecked Sendable {
    let png: URL, before: CGImage, after: CGImage, width: Int, height: Int, scale: Int, tile: Int, seconds: Double
}

/// Upscales a photo within a fixed memory budget, off the main actor.
///
/// The photo is read one band of tile rows at a time from a CGImageSource (no cache, sub-rectangles of the
/// stored image, turned upright by its orientation property), and finished SR rows go straight into a PNG file
/// while 2048 px previews are sampled: the same tile plan and blending as the golden vectors (UpscalerCore
/// upscaleBands). For a 12 MP photo at x4: about 89 MB for the bands, the accumulator, one chunk of rows and the
/// previews, plus Core ML and ImageIO's transient decode; the budget is 400 MB (the Android app's arithmetic).
nonisolated enum PhotoUpscaler {
    static let previewSide = 2048

    /// Half of the device's memory for the streamed buffers at most (the tile choice's budget).
    static var memoryBudget: Int { Int(ProcessInfo.processInfo.physicalMemory / 2) }

    static func run(data: Data, output: URL, progress: @escaping @Sendable (Int, Int) -> Void) async throws -> Upscaled {
        guard let url = Bundle.main.url(forResource: "model", withExtension: "mlmodelc") else { throw UpscaleError.noModel }
        let options = [kCGImageSourceShouldCache: false] as CFDictionary
        guard let source = CGImageSourceCreateWithData(data as CFData, options),
              let image = CGImageSourceCreateImageAtIndex(source, 0, options)
        else { throw UpscaleError.unreadablePhoto("no image in the data") }
        let properties = CGImageSourceCopyPropertiesAtIndex(source, 0, nil) as? [CFString: Any]
        let exif = (properties?[kCGImagePropertyOrientation] as? NSNumber)?.intValue ?? 1
        let orientation = Orientation(exif: exif, rawW: image.width, rawH: image.height)
        let w = orientation.width, h = orientation.height
        let upscaler = try await CoreMLTileUpscaler.forPhoto(url: url, w: w, h: h, maxBytes: memoryBudget,
                                                             previewSide: previewSide)
        let scale = upscaler.scale
        var before = PreviewSampler(w: w, h: h, maxSide: previewSide)
        var after = PreviewSampler(w: w * scale, h: h * scale, maxSide: previewSide)
        let partial = output.appendingPathExtension("part")
        let started = Date()
        let png = try PngWriter(url: partial, width: w * scale, height: h * scale)
        try upscaleBands(
            channels: 3, h: h, w: w, scale: scale, tile: upscaler.tile, overlap: defaultOverlap(upscaler.tile),
            readBand: { y0, rows in
                let r = orientation.rawRect(y0: y0, rows: rows)
                guard let region = image.cropping(to: CGRect(x: r.x, y: r.y, width: r.width, height: r.height)) else {
                    throw UpscaleError.unreadablePhoto("rows \(y0)..<\(y0 + rows) could not be cropped")
                }
                let upright = orientation.toDisplay(y0: y0, rows: rows, decoded: try argbPixels(of: region))
                before.accept(y0: y0, rows: rows, pixels: upright)
                return argbToChw(upright, width: w, height: rows)
            },
            writeRows: { y0, rows, chw in
                let argb = chwToArgb(chw, width: w * scale, height: rows)
                try png.write(rows: argb, count: rows)
                after.accept(y0: y0, rows: rows, pixels: argb)
            },
            onTile: progress, upscaleTile: upscaler.upscaleTile)
        try png.finish()
        try? FileManager.default.removeItem(at: output)
        try FileManager.default.moveItem(at: partial, to: output)
        return Upscaled(png: output, before: try makeImage(before.argb, width: before.width, height: before.height),
                        after: try makeImage(after.argb, width: after.width, height: after.height),
                        width: w, height: h, scale: scale, tile: upscaler.tile,
                        seconds: Date().timeIntervalSince(started))
    }

    /// The image's pixels as 0xAARRGGBB, drawn into a buffer this function owns for the context's whole life.
    static func argbPixels(of image: CGImage) throws -> [UInt32] {
        let width = image.width, height = image.height
        var pixels = [UInt32](repeating: 0, count: width * height)
        let drawn = pixels.withUnsafeMutableBytes { buffer -> Bool in
            guard let context = CGContext(data: buffer.baseAddress, width: width, height: height, bitsPerComponent: 8,
                                          bytesPerRow: 4 * width, space: CGColorSpaceCreateDeviceRGB(),
                                          bitmapInfo: CGImageAlphaInfo.noneSkipFirst.rawValue | CGBitmapInfo.byteOrder32Little.rawValue)
            else { return false }
            context.draw(image, in: CGRect(x: 0, y: 0, width: width, height: height))
            return true
        }
        guard drawn else { throw UpscaleError.unreadablePhoto("no bitmap context for \(width)x\(height)") }
        return pixels
    }

    /// A CGImage that owns a copy of the pixels (no pointer outlives its buffer).
    static func makeImage(_ argb: [UInt32], width: Int, height: Int) throws -> CGImage {
        let data = argb.withUnsafeBytes { Data($0) } as CFData
        guard let provider = CGDataProvider(data: data),
              let image = CGImage(width: width, height: height, bitsPerComponent: 8, bitsPerPixel: 32, bytesPerRow: 4 * width,
                                  space: CGColorSpaceCreateDeviceRGB(),
                                  bitmapInfo: CGBitmapInfo(rawValue: CGImageAlphaInfo.noneSkipFirst.rawValue | CGBitmapInfo.byteOrder32Little.rawValue),
                                  provider: provider, decode: nil, shouldInterpolate: true, intent: .defaultIntent)
        else { throw UpscaleError.unreadablePhoto("no preview image") }
        return image
    }
}

/// An 8-bit RGB PNG written row by row (Compression's raw deflate wrapped in a zlib stream), so the upscaled
/// photo never exists whole in memory. The Android core's PngWriter does the same with java.util.zip.
nonisolated final class PngWriter {
    private let handle: FileHandle
    private let width: Int, height: Int
    private var rowsWritten = 0
    private var adler: (a: UInt32, b: UInt32) = (1, 0)
    private var filter: OutputFilter!

    init(url: URL, width: Int, height: Int) throws {
        FileManager.default.createFile(atPath: url.path, contents: nil)
        handle = try FileHandle(forWritingTo: url)
        self.width = width
        self.height = height
        try handle.write(contentsOf: Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
        var header = Data()
        header.append(bigEndian: UInt32(width))
        header.append(bigEndian: UInt32(height))
        header.append(contentsOf: [8, 2, 0, 0, 0])  // 8-bit, RGB, deflate, adaptive filters, no interlace
        try chunk("IHDR", header)
        try chunk("IDAT", Data([0x78, 0x01]))  // zlib header: deflate, 32 KB window, no dictionary
        filter = try OutputFilter(.compress, using: .zlib, bufferCapacity: 1 << 16) { [unowned self] data in
            if let data, !data.isEmpty { try self.chunk("IDAT", data) }
        }
    }

    /// Appends `count` rows of 0xAARRGGBB pixels (alpha dropped), `width` per row, with PNG's Sub filter.
    func write(rows argb: [UInt32], count: Int) throws {
        precondition(rowsWritten + count <= height, "too many rows")
        var row = Data(count: 1 + 3 * width)
        for y in 0..<count {
            row.withUnsafeMutableBytes { (bytes: UnsafeMutableRawBufferPointer) in
                bytes[0] = 1
                var left: (UInt32, UInt32, UInt32) = (0, 0, 0)
                for x in 0..<width {
                    let p = argb[y * width + x]
                    let r = (p >> 16) & 0xFF, g = (p >> 8) & 0xFF, b = p & 0xFF
                    bytes[1 + 3 * x] = UInt8(truncatingIfNeeded: r &- left.0)
                    bytes[2 + 3 * x] = UInt8(truncatingIfNeeded: g &- left.1)
                    bytes[3 + 3 * x] = UInt8(truncatingIfNeeded: b &- left.2)
                    left = (r, g, b)
                }
            }
            for byte in row { adler.a = (adler.a + UInt32(byte)) % 65521; adler.b = (adler.b + adler.a) % 65521 }
            try filter.write(row)
        }
        rowsWritten += count
    }

    /// Ends the deflate stream, the zlib trailer and the file.
    func finish() throws {
        precondition(rowsWritten == height, "PNG finished after \(rowsWritten) of \(height) rows")
        try filter.finalize()
        var trailer = Data()
        trailer.append(bigEndian: adler.b << 16 | adler.a)
        try chunk("IDAT", trailer)
        try chunk("IEND", Data())
        try handle.close()
    }

    private func chunk(_ type: String, _ data: Data) throws {
        var out = Data()
        out.append(bigEndian: UInt32(data.count))
        let body = Data(type.utf8) + data
        out.append(body)
        out.append(bigEndian: crc32(body))
        try handle.write(contentsOf: out)
    }
}

private let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
    var c = UInt32(n)
    for _ in 0..<8 { c = c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    return c
}

private func crc32(_ data: Data) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for byte in data { c = crcTable[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
    return c ^ 0xFFFF_FFFF
}

private extension Data {
    mutating func append(bigEndian value: UInt32) { Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) } }
}
#endif
