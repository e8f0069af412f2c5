// CPU emulation of <cuda_fp16.h> (see cuda_emu.h): __half / __half2 with CUDA's
// round-to-nearest-even conversions (NaN -> 0x7fff like CUDA's host code, overflow -> inf).
#pragma once
#include "cuda_emu.h"
