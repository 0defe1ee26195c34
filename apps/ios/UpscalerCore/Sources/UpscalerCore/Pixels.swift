// Pixel packing shared with the pipeline (pipeline/golden.py pack_argb / unpack_argb).

/// 0xAARRGGBB pixels (row-major) to float CHW RGB in [0, 1]; alpha is dropped.
public func argbToChw(_ argb: [UInt32], width: Int, height: Int) -> [Float] {
    precondition(argb.count == width * height, "expected \(width * height) pixels")
    let plane = width * height
    var out = [Float](repeating: 0, count: 3 * plane)
    for i in 0..<plane {
        out[i] = Float((argb[i] >> 16) & 0xFF) / 255
        out[plane + i] = Float((argb[i] >> 8) & 0xFF) / 255
        out[2 * plane + i] = Float(argb[i] & 0xFF) / 255
    }
    return out
}

/// Float to an 8-bit level like the pipeline: NaN -> 0, clamp to [0, 1], round(x * 255) half to even in Float.
public func toLevel(_ value: Float) -> UInt32 {
    if value.isNaN { return 0 }
    return UInt32((min(max(value, 0), 1) * 255).rounded(.toNearestOrEven))
}

/// Float CHW RGB to opaque 0xAARRGGBB pixels.
public func chwToArgb(_ chw: [Float], width: Int, height: Int) -> [UInt32] {
    let plane = width * height
    precondition(chw.count == 3 * plane, "expected \(3 * plane) values")
    return (0..<plane).map { i in
        0xFF00_0000 | (toLevel(chw[i]) << 16) | (toLevel(chw[plane + i]) << 8) | toLevel(chw[2 * plane + i])
    }
}
