// The umbrella header: the core, every op, gradcheck.
#pragma once

#include "tinymoe/autograd.h"
#include "tinymoe/dtype.h"
#include "tinymoe/error.h"
#include "tinymoe/random.h"
#include "tinymoe/tensor.h"
#include "ops/elementwise.h"
#include "ops/gemm.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "tinymoe/gradcheck.h"
