// The host's C library printing what calls_kernels.cu's hello kernel prints, for blocks x threads given as arguments.
#include <stdio.h>
#include <stdlib.h>
#include "printf_format.h"

int main(int argc, char** argv)
{
    int blocks = atoi(argv[1]), threads = atoi(argv[2]), n = atoi(argv[3]);
    for (int b = 0; b < blocks; b++)
    {
        for (unsigned t = 0; t < (unsigned)threads; t++)
        {
            printf(HELLO_FORMAT, HELLO_ARGS(b, t, n));
        }
    }

    return 0;
}
