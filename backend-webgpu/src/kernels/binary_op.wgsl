// The binary ops by `OP` (declared by the kernel that includes this file), shared by
// binary.wgsl and broadcast.wgsl.

fn apply(x: f32, y: f32) -> f32 {
    switch OP {
        case BINARY_ADD: { return x + y; }
        case BINARY_SUB: { return x - y; }
        case BINARY_MUL: { return x * y; }
        case BINARY_DIV: { return div_acc(x, y); }
        case BINARY_MAX: { return max_nan(x, y); }
        case BINARY_MIN: { return min_nan(x, y); }
        case BINARY_POW: { return pow_acc(x, y); }
        case BINARY_MOD: { return fmod_acc(x, y); }
        default: { return nan_f32(); }
    }
}

