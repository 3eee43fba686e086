using GpuPool.Modules.Fatbin;

namespace GpuPool.Modules.Tests;

/// <summary>The fat binary container as nvcc writes it: entries, their archs, and LZ4-compressed payloads.</summary>
public sealed class FatBinaryTests(Nvcc nvcc) : IClassFixture<Nvcc>
{
    [Fact]
    public void A_fat_binary_holds_one_entry_per_sass_arch_and_one_per_ptx_arch()
    {
        var entries = FatBinary.Read(nvcc.FatBinary("params.cu", Stored.Plain));

        Assert.Equal([(FatBinaryEntryKind.Elf, 52), (FatBinaryEntryKind.Elf, 70), (FatBinaryEntryKind.Ptx, 70)], entries.Select(e => (e.Kind, e.SmArch)));
        Assert.All(entries, e => Assert.False(e.WasCompressed));
        Assert.All(entries, e => Assert.True(e.Is64Bit));
        Assert.All(entries, e => Assert.Equal(0, e.Container));
    }

    [Theory]
    [InlineData(52)]
    [InlineData(70)]
    public void An_elf_entry_is_the_cubin_nvcc_builds_for_its_arch_then_padding(int arch)
    {
        var cubin = nvcc.Cubin("params.cu", arch);

        var entry = FatBinary.Read(nvcc.FatBinary("params.cu", Stored.Plain)).Single(e => e.Kind == FatBinaryEntryKind.Elf && e.SmArch == arch);

        Assert.Equal(cubin, entry.Payload.Span[..cubin.Length].ToArray());
        Assert.False(entry.Payload.Span[cubin.Length..].ContainsAnyExcept((byte)0));
    }

    [Fact]
    public void Nvccs_default_compresses_the_ptx_only()
    {
        var entries = FatBinary.Read(nvcc.FatBinary("params.cu", Stored.Default));

        Assert.Equal([FatBinaryCompression.None, FatBinaryCompression.None, FatBinaryCompression.Lz4], entries.Select(e => e.Compression));
    }

    [Theory]
    [InlineData(Stored.Default)]
    [InlineData(Stored.AllCompressed)]
    public void Compressed_entries_decompress_to_what_the_uncompressed_build_stores(Stored stored)
    {
        var plain = FatBinary.Read(nvcc.FatBinary("params.cu", Stored.Plain));

        var compressed = FatBinary.Read(nvcc.FatBinary("params.cu", stored));

        Assert.Equal(plain.Select(e => (e.Kind, e.SmArch)), compressed.Select(e => (e.Kind, e.SmArch)));
        for (var i = 0; i < plain.Count; i++)
        {
            // A stored payload keeps the container's padding; a decompressed one is its stated size.
            var payload = compressed[i].Payload.Span;
            Assert.Equal(plain[i].Payload.Span[..payload.Length].ToArray(), payload.ToArray());
            Assert.False(plain[i].Payload.Span[payload.Length..].ContainsAnyExcept((byte)0));
        }
    }

    [Fact]
    public void With_every_entry_compressed_all_are_lz4()
    {
        var entries = FatBinary.Read(nvcc.FatBinary("params.cu", Stored.AllCompressed));

        Assert.All(entries, e => Assert.Equal(FatBinaryCompression.Lz4, e.Compression));
    }

    [Fact]
    public void A_ptx_only_fat_binary_holds_ptx_per_virtual_arch()
    {
        var entries = FatBinary.Read(nvcc.PtxOnlyFatBinary("params.cu"));

        Assert.Equal([(FatBinaryEntryKind.Ptx, 52), (FatBinaryEntryKind.Ptx, 70)], entries.Select(e => (e.Kind, e.SmArch)));
    }

    [Fact]
    public void A_cubin_only_fat_binary_holds_elf_per_real_arch()
    {
        var entries = FatBinary.Read(nvcc.CubinOnlyFatBinary("params.cu"));

        Assert.Equal([(FatBinaryEntryKind.Elf, 52), (FatBinaryEntryKind.Elf, 70)], entries.Select(e => (e.Kind, e.SmArch)));
    }

    [Fact]
    public void An_lto_entry_is_kept_but_is_neither_ptx_nor_sass()
    {
        var bytes = nvcc.Build("params.lto.fatbin", "params.cu", "-fatbin", "-gencode", "arch=compute_70,code=[sm_70,lto_70]");

        var image = ModuleImage.Read(bytes);

        Assert.Equal([FatBinaryEntryKind.Elf, FatBinaryEntryKind.LtoIr], image.Entries.Select(e => e.Kind));
        Assert.Null(image.Ptx);
        Assert.NotNull(image.Cubin);
    }

    [Theory]
    [InlineData(Stored.Plain)]
    [InlineData(Stored.AllCompressed)]
    public void The_size_from_the_header_is_the_whole_container(Stored stored)
    {
        var image = nvcc.FatBinary("params.cu", stored);

        Assert.Equal(image.Length, FatBinary.SizeFromHeader(image.AsSpan(0, FatBinary.HeaderBytes)));
    }

    [Fact]
    public void Containers_back_to_back_are_read_in_order()
    {
        var image = nvcc.FatBinary("params.cu", Stored.Default).Concat(nvcc.PtxOnlyFatBinary("params.cu")).ToArray();

        var entries = FatBinary.Read(image);

        Assert.Equal([0, 0, 0, 1, 1], entries.Select(e => e.Container));
        Assert.Equal([FatBinaryEntryKind.Ptx, FatBinaryEntryKind.Ptx], entries.Where(e => e.Container == 1).Select(e => e.Kind));
    }

    [Fact]
    public void Nul_padding_after_a_container_is_allowed()
    {
        var image = nvcc.FatBinary("params.cu", Stored.Default).Concat(new byte[8]).ToArray();

        Assert.Equal(3, FatBinary.Read(image).Count);
    }
}
