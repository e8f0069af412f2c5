// CPU emulation of <cuda_bf16.h> (see cuda_emu.h): __nv_bfloat16 / __nv_bfloat162 with CUDA's
// round-to-nearest-even conversions (NaN -> 0x7fff like CUDA's host code).
#pragma once
#include "cuda_emu.h"
