/* Portable CSR kernel: the reference sibling for both sparse formats. */
#include "sparse.h"
#include "csr-row.h"

CONDENSE_CSR_ROW_DOT(row_u16, , uint16_t)
CONDENSE_CSR_ROW_DOT(row_u32, , uint32_t)
CONDENSE_CSR_DOT_DRIVER(condense_csr_dot__scalar, , row_u16, row_u32)
