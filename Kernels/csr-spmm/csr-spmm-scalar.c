/* Portable CSR kernel: the reference sibling for both sparse formats. */
#include "sparse.h"
#include "csr-row.h"

CONDENSE_CSR_DOT_DRIVER(condense_csr_dot__scalar, , scalar)
