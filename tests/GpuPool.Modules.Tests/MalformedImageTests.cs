using GpuPool.Modules.Elf;
using GpuPool.Modules.Fatbin;

namespace GpuPool.Modules.Tests;

/// <summary>Images that lie: each is refused as a <see cref="ModuleImageException"/> that names the field, never anything else.</summary>
public sealed partial class MalformedImageTests(Nvcc nvcc) : IClassFixture<Nvcc>
{
    // The first entry header of an nvcc fat binary follows the 16-byte container header.
    private const int Entry = 16;

    private byte[] FatBinaryImage => nvcc.FatBinary("variables.cu", Stored.AllCompressed);

    private byte[] StoredFatBinaryImage => nvcc.FatBinary("variables.cu", Stored.Plain);

    private byte[] CubinImage => nvcc.Cubin("variables.cu", 70);

    [Fact]
    public void A_container_with_a_corrupt_magic_is_invalid()
    {
        var e = Refused(ModuleImageError.InvalidImage, () => FatBinary.Read(FatBinaryImage.WithByte(1, 0)));

        Assert.Contains("magic", e.Message);
    }

    [Fact]
    public void A_truncated_container_is_invalid_naming_its_size()
    {
        var image = FatBinaryImage;

        var e = Refused(ModuleImageError.InvalidImage, () => FatBinary.Read(image.AsSpan(0, image.Length / 2)));

        Assert.Contains($"{image.Length} bytes at offset 0x0", e.Message);
        Assert.Contains("runs past the end", e.Message);
    }

    [Fact]
    public void A_container_header_cut_short_is_invalid()
    {
        var e = Refused(ModuleImageError.InvalidImage, () => FatBinary.Read(FatBinaryImage.AsSpan(0, 10)));

        Assert.Contains("cut off", e.Message);
    }

    [Fact]
    public void An_entry_whose_payload_runs_past_its_container_is_invalid()
    {
        var e = Refused(ModuleImageError.InvalidImage, () => FatBinary.Read(FatBinaryImage.WithU32(Entry + 8, 0x7FFF_FFFF)));

        Assert.Contains("entry at offset 0x10 says its payload is 2147483647 bytes", e.Message);
    }

    [Fact]
    public void An_entry_whose_header_is_shorter_than_a_header_is_invalid()
    {
        var e = Refused(ModuleImageError.InvalidImage, () => FatBinary.Read(FatBinaryImage.WithU32(Entry + 4, 8)));

        Assert.Contains("says its header is 8 bytes", e.Message);
    }

    [Fact]
    public void A_container_of_another_version_is_not_supported()
    {
        Refused(ModuleImageError.NotSupported, () => FatBinary.Read(FatBinaryImage.WithU16(4, 2)));
    }

    [Fact]
    public void An_entry_of_another_version_is_not_supported()
    {
        Refused(ModuleImageError.NotSupported, () => FatBinary.Read(FatBinaryImage.WithU16(Entry + 2, 0x0102)));
    }

    [Fact]
    public void A_zstd_compressed_entry_is_not_supported_naming_zstd()
    {
        var image = FatBinaryImage;

        var e = Refused(ModuleImageError.NotSupported, () => FatBinary.Read(image.WithU64(Entry + 40, (image.U64(Entry + 40) & ~FatBinary.FlagLz4) | FatBinary.FlagZstd)));

        Assert.Contains("zstd", e.Message);
    }

    [Fact]
    public void A_compressed_size_beyond_the_payload_is_invalid()
    {
        var image = FatBinaryImage;

        var e = Refused(ModuleImageError.InvalidImage, () => FatBinary.Read(image.WithU32(Entry + 16, image.U32(Entry + 8) + 1)));

        Assert.Contains("compressed", e.Message);
    }

    [Fact]
    public void A_decompressed_size_beyond_the_cap_is_refused_before_anything_is_allocated()
    {
        var e = Refused(ModuleImageError.InvalidImage, () => FatBinary.Read(FatBinaryImage.WithU64(Entry + 56, 1UL << 40)));

        Assert.Contains("256 MiB", e.Message);
    }

    [Fact]
    public void A_decompressed_size_lz4_cannot_reach_is_refused_before_anything_is_allocated()
    {
        var image = FatBinaryImage;

        var e = Refused(ModuleImageError.InvalidImage, () => FatBinary.Read(image.WithU64(Entry + 56, (image.U32(Entry + 16) * 255UL) + 17)));

        Assert.Contains("more than LZ4 can make", e.Message);
    }

    [Fact]
    public void Bytes_after_the_container_that_are_not_another_are_invalid()
    {
        var e = Refused(ModuleImageError.InvalidImage, () => FatBinary.Read([.. FatBinaryImage, 1, 2, 3]));

        Assert.Contains("neither another container nor NUL padding", e.Message);
    }

    [Fact]
    public void The_size_from_a_header_needs_the_whole_header()
    {
        Refused(ModuleImageError.InvalidImage, () => FatBinary.SizeFromHeader(FatBinaryImage.AsSpan(0, 15)));
    }

    [Fact]
    public void The_size_from_a_header_is_never_beyond_the_cap()
    {
        var e = Refused(ModuleImageError.InvalidImage, () => FatBinary.SizeFromHeader(FatBinaryImage.WithU64(8, 1UL << 40).AsSpan(0, 16)));

        Assert.Contains("1024 MiB", e.Message);
    }

    [Fact]
    public void An_lz4_match_reaching_before_the_start_of_the_output_is_invalid()
    {
        // One literal, then a match 2 bytes back: there is only 1 byte behind it.
        var e = Refused(ModuleImageError.InvalidImage, () => FatBinary.Read(Container.WithLz4([0x10, (byte)'A', 0x02, 0x00, 0x00], 5)));

        Assert.Contains("before the start of the output", e.Message);
    }

    [Fact]
    public void An_lz4_literal_run_past_the_end_of_the_stream_is_invalid()
    {
        // 15 + 16 literals promised, 3 there.
        var e = Refused(ModuleImageError.InvalidImage, () => FatBinary.Read(Container.WithLz4([0xF0, 0x10, 1, 2, 3], 31)));

        Assert.Contains("runs past the end of the 5-byte stream", e.Message);
    }

    [Fact]
    public void An_lz4_match_past_the_stated_size_is_invalid()
    {
        // One literal and a match of 4 make 5 bytes; the entry says 3.
        var e = Refused(ModuleImageError.InvalidImage, () => FatBinary.Read(Container.WithLz4([0x10, (byte)'A', 0x01, 0x00, 0x00], 3)));

        Assert.Contains("runs past the 3 bytes", e.Message);
    }

    [Fact]
    public void An_lz4_length_that_never_ends_is_invalid()
    {
        Refused(ModuleImageError.InvalidImage, () => FatBinary.Read(Container.WithLz4([0xF0, 0xFF, 0xFF], 1000)));
    }

    [Fact]
    public void An_lz4_stream_shorter_than_stated_is_invalid()
    {
        var e = Refused(ModuleImageError.InvalidImage, () => FatBinary.Read(Container.WithLz4([0x10, (byte)'A'], 2)));

        Assert.Contains("decompresses to 1 bytes, not the 2", e.Message);
    }

    [Fact]
    public void An_overlapping_lz4_match_repeats_its_pattern()
    {
        // "ab", then a match of 6 from 2 back: "abababab".
        var entry = FatBinary.Read(Container.WithLz4([0x22, (byte)'a', (byte)'b', 0x02, 0x00, 0x00], 8)).Single();

        Assert.Equal("abababab"u8.ToArray(), entry.Payload.ToArray());
    }

    [Fact]
    public void A_section_header_table_past_the_end_is_invalid()
    {
        var e = Refused(ModuleImageError.InvalidImage, () => Cubin.Read(CubinImage.WithU64(0x28, 0xFFFF_0000)));

        Assert.Contains("section header table", e.Message);
    }

    [Fact]
    public void A_truncated_cubin_is_invalid()
    {
        var image = CubinImage;

        // Cut inside the section header table (program headers, after it, are not read).
        var e = Refused(ModuleImageError.InvalidImage, () => Cubin.Read(image.AsSpan(0, (int)image.U64(0x28) + 100)));

        Assert.Contains("section header table", e.Message);
    }

    [Fact]
    public void A_sections_data_past_the_end_is_invalid_naming_the_section()
    {
        var header = new ElfLayout(CubinImage).SectionHeader(".nv.global.init");

        var e = Refused(ModuleImageError.InvalidImage, () => Cubin.Read(CubinImage.WithU64(header + 32, 1UL << 32)));

        Assert.Contains("sh_offset, sh_size", e.Message);
    }

    [Fact]
    public void A_section_name_outside_the_names_table_is_invalid()
    {
        var header = new ElfLayout(CubinImage).SectionHeader(".nv.constant3");

        var e = Refused(ModuleImageError.InvalidImage, () => Cubin.Read(CubinImage.WithU32(header, 0xFFFFFF)));

        Assert.Contains("sh_name is 16777215", e.Message);
    }

    [Fact]
    public void A_names_table_index_past_the_sections_is_invalid()
    {
        var e = Refused(ModuleImageError.InvalidImage, () => Cubin.Read(CubinImage.WithU16(0x3E, 0xFFF)));

        Assert.Contains("e_shstrndx", e.Message);
    }

    [Fact]
    public void A_variable_running_past_its_section_is_invalid_naming_it()
    {
        var symbol = new ElfLayout(CubinImage).Symbol("y");

        var e = Refused(ModuleImageError.InvalidImage, () => Cubin.Read(CubinImage.WithU64(symbol + 16, 1000)));

        Assert.Contains("variable y (1000 bytes", e.Message);
    }

    [Fact]
    public void A_symbol_name_outside_the_string_table_is_invalid()
    {
        var symbol = new ElfLayout(CubinImage).Symbol("y");

        var e = Refused(ModuleImageError.InvalidImage, () => Cubin.Read(CubinImage.WithU32(symbol, 0x7FFF_FFFF)));

        Assert.Contains("st_name", e.Message);
    }

    [Fact]
    public void A_symbol_in_a_section_that_does_not_exist_is_invalid()
    {
        var symbol = new ElfLayout(CubinImage).Symbol("y");

        var e = Refused(ModuleImageError.InvalidImage, () => Cubin.Read(CubinImage.WithU16(symbol + 6, 0x1000)));

        Assert.Contains("st_shndx", e.Message);
    }

    [Fact]
    public void An_nv_info_attribute_longer_than_its_section_is_invalid()
    {
        // EIATTR_CUDA_API_VERSION (0x37), a sized attribute every kernel has.
        var attribute = new ElfLayout(CubinImage).Attribute(".nv.info.touch", 0x37);

        var e = Refused(ModuleImageError.InvalidImage, () => Cubin.Read(CubinImage.WithU16(attribute + 2, 0xFFFF)));

        Assert.Contains("kernel touch's .nv.info", e.Message);
    }

    [Fact]
    public void Two_parameters_with_one_ordinal_are_invalid()
    {
        var layout = new ElfLayout(CubinImage);
        int first = layout.Attribute(".nv.info.touch", 0x17), second = layout.Attribute(".nv.info.touch", 0x17, 1);

        // An EIATTR_KPARAM_INFO's ordinal is 8 bytes in, after the format, attribute, size and u32 index.
        var e = Refused(ModuleImageError.InvalidImage, () => Cubin.Read(CubinImage.WithU16(second + 8, CubinImage.U16(first + 8))));

        Assert.Contains("ordinals", e.Message);
    }

    [Fact]
    public void A_parameter_bank_size_that_disagrees_with_the_declared_size_is_invalid()
    {
        var bank = new ElfLayout(CubinImage).Attribute(".nv.info.touch", 0x0A);

        var e = Refused(ModuleImageError.InvalidImage, () => Cubin.Read(CubinImage.WithU16(bank + 4 + 6, 8)));

        Assert.Contains("EIATTR_PARAM_CBANK says the parameters take 8 bytes", e.Message);
    }

    [Fact]
    public void A_kernel_without_its_nv_info_is_invalid()
    {
        var layout = new ElfLayout(CubinImage);
        var (names, _) = layout.SectionData(".shstrtab");
        var nameAt = names + (int)CubinImage.U32(layout.SectionHeader(".nv.info.touch"));

        // ".nv.info.touch" becomes ".nv.info.touci".
        var e = Refused(ModuleImageError.InvalidImage, () => Cubin.Read(CubinImage.WithByte(nameAt + 13, (byte)'i')));

        Assert.Contains("no .nv.info.touch section", e.Message);
    }

    [Fact]
    public void A_32_bit_elf_is_not_supported()
    {
        Refused(ModuleImageError.NotSupported, () => Cubin.Read(CubinImage.WithByte(4, 1)));
    }

    [Fact]
    public void A_big_endian_elf_is_not_supported()
    {
        Refused(ModuleImageError.NotSupported, () => Cubin.Read(CubinImage.WithByte(5, 2)));
    }

    [Fact]
    public void An_elf_for_another_machine_is_not_a_cubin()
    {
        var e = Refused(ModuleImageError.InvalidImage, () => Cubin.Read(CubinImage.WithU16(0x12, 62)));

        Assert.Contains("e_machine", e.Message);
    }

    [Fact]
    public void A_broken_cubin_inside_a_fat_binary_is_named_by_its_entry()
    {
        var image = StoredFatBinaryImage;
        var cubin = FatBinary.Read(image).Last(e => e.Kind == FatBinaryEntryKind.Elf);

        // The ELF's e_machine, 0x12 into the payload that follows the 64-byte entry header.
        var e = Refused(ModuleImageError.InvalidImage, () => ModuleImage.Read(image.WithU16((int)cubin.Offset + 64 + 0x12, 62)));

        Assert.StartsWith($"the ELF entry at offset 0x{cubin.Offset:X} (sm_70)", e.Message);
    }

    private static ModuleImageException Refused(ModuleImageError error, Action read)
    {
        var e = Assert.Throws<ModuleImageException>(read);
        Assert.Equal(error, e.Error);
        return e;
    }
}
