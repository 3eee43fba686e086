using System.Text;

namespace GpuPool.Modules.Tests;

/// <summary>How fat binary entries are stored: nvcc --no-compress, nvcc's default (PTX compressed), or fatbinary -compress-all.</summary>
public enum Stored
{
    Plain,
    Default,
    AllCompressed,
}

/// <summary>The nvcc builds the tests use, named by what they are.</summary>
public static class Images
{
    /// <summary>SASS for sm_52 and sm_70, PTX for compute_70.</summary>
    public static readonly string[] SassAndPtx = ["-gencode", "arch=compute_52,code=sm_52", "-gencode", "arch=compute_70,code=[sm_70,compute_70]"];

    public static byte[] FatBinary(this Nvcc nvcc, string source, Stored stored)
    {
        string[] compression = stored switch
        {
            Stored.Plain => ["--no-compress"],
            Stored.AllCompressed => ["-Xfatbin", "-compress-all"],
            _ => [],
        };
        return nvcc.Build($"{Path.GetFileNameWithoutExtension(source)}.{stored}.fatbin", source, ["-fatbin", .. compression, .. SassAndPtx]);
    }

    /// <summary>PTX for compute_52 and compute_70, no SASS.</summary>
    public static byte[] PtxOnlyFatBinary(this Nvcc nvcc, string source)
        => nvcc.Build($"{Path.GetFileNameWithoutExtension(source)}.ptx-only.fatbin", source,
            "-fatbin", "-gencode", "arch=compute_52,code=compute_52", "-gencode", "arch=compute_70,code=compute_70");

    /// <summary>SASS for sm_52 and sm_70, no PTX.</summary>
    public static byte[] CubinOnlyFatBinary(this Nvcc nvcc, string source)
        => nvcc.Build($"{Path.GetFileNameWithoutExtension(source)}.cubin-only.fatbin", source,
            "-fatbin", "-gencode", "arch=compute_52,code=sm_52", "-gencode", "arch=compute_70,code=sm_70");

    public static byte[] Cubin(this Nvcc nvcc, string source, int arch)
        => nvcc.Build($"{Path.GetFileNameWithoutExtension(source)}.sm_{arch}.cubin", source, "-cubin", $"-arch=sm_{arch}");

    public static string Ptx(this Nvcc nvcc, string source, int arch = 70)
        => Encoding.UTF8.GetString(nvcc.Build($"{Path.GetFileNameWithoutExtension(source)}.compute_{arch}.ptx", source, "-ptx", $"-arch=sm_{arch}"));
}
