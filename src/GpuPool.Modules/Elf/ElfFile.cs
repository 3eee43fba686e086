using System.Text;
using static GpuPool.Modules.Internal.Bounds;

namespace GpuPool.Modules.Elf;

/// <summary>A section header, its name resolved; a section with data has been checked to lie inside the image.</summary>
internal readonly record struct ElfSection(int Index, string Name, uint Type, ulong Address, ulong Offset, ulong Size, uint Link, uint Info, ulong AddrAlign)
{
    public bool HasData => Type != ElfFile.ShtNobits;
}

/// <summary>A symbol, its name resolved; <see cref="SectionIndex"/> is 0, a reserved index (0xFF00 and up), or a section that exists.</summary>
internal readonly record struct ElfSymbol(string Name, byte Info, byte Other, ushort SectionIndex, ulong Value, ulong Size)
{
    public int Type => Info & 0xF;

    /// <summary>The index of the section the symbol is defined in, or -1 for an undefined or absolute symbol.</summary>
    public int DefinedIn => SectionIndex is 0 or >= ElfFile.ShnLoReserve ? -1 : SectionIndex;
}

/// <summary>
/// The parts of an ELF64 little-endian image a module reader needs: section headers with their names, section data
/// and the symbol table. Everything the image says about where things are is checked before it is used.
/// </summary>
internal readonly ref struct ElfFile
{
    public const uint ShtSymtab = 2;
    public const uint ShtStrtab = 3;
    public const uint ShtNobits = 8;
    public const ushort ShnLoReserve = 0xFF00;

    private const int HeaderBytes = 64;
    private const int SectionHeaderBytes = 64;
    private const int SymbolBytes = 24;

    private readonly ReadOnlySpan<byte> _image;

    private ElfFile(ReadOnlySpan<byte> image, ElfSection[] sections, ushort machine, uint flags, byte abiVersion)
    {
        _image = image;
        Sections = sections;
        Machine = machine;
        Flags = flags;
        AbiVersion = abiVersion;
    }

    public ElfSection[] Sections { get; }

    public ushort Machine { get; }

    public uint Flags { get; }

    /// <summary>e_ident[EI_ABIVERSION]: for a cubin, which layout <see cref="Flags"/> has.</summary>
    public byte AbiVersion { get; }

    public static bool HasMagic(ReadOnlySpan<byte> image) => image.StartsWith("\x7F"u8) && image[1..].StartsWith("ELF"u8);

    public static ElfFile Read(ReadOnlySpan<byte> image)
    {
        if (!HasMagic(image))
        {
            throw ModuleImageException.Invalid("the image does not start with the ELF magic 7F 45 4C 46");
        }

        if (image.Length < HeaderBytes)
        {
            throw ModuleImageException.Invalid($"the ELF header is cut off: {image.Length} of its {HeaderBytes} bytes are there");
        }

        if (image[4] != 2)
        {
            throw ModuleImageException.Unsupported($"the ELF image has class {image[4]} (EI_CLASS at offset 0x4); only 64-bit (2) cubins are read");
        }

        if (image[5] != 1)
        {
            throw ModuleImageException.Unsupported($"the ELF image has data encoding {image[5]} (EI_DATA at offset 0x5); only little-endian (1) is read");
        }

        var machine = U16(image, 0x12, "e_machine");
        var sectionTable = U64(image, 0x28, "e_shoff");
        var flags = U32(image, 0x30, "e_flags");
        var entrySize = U16(image, 0x3A, "e_shentsize");
        var count = U16(image, 0x3C, "e_shnum");
        var namesIndex = U16(image, 0x3E, "e_shstrndx");

        if (count == 0)
        {
            throw ModuleImageException.Invalid("the ELF image has no section headers (e_shnum at offset 0x3C is 0)");
        }

        if (entrySize != SectionHeaderBytes)
        {
            throw ModuleImageException.Invalid($"the ELF section headers are {entrySize} bytes each (e_shentsize at offset 0x3A), not {SectionHeaderBytes}");
        }

        Require(image, sectionTable, (ulong)count * SectionHeaderBytes, $"the ELF section header table of {count} entries (e_shoff, e_shnum)");
        if (namesIndex >= count)
        {
            throw ModuleImageException.Invalid($"e_shstrndx at offset 0x3E is {namesIndex}, but there are only {count} sections");
        }

        var raw = new (uint Name, uint Type, ulong Address, ulong Offset, ulong Size, uint Link, uint Info, ulong AddrAlign)[count];
        for (var i = 0; i < count; i++)
        {
            var at = sectionTable + ((ulong)i * SectionHeaderBytes);
            var header = image.Slice((int)at, SectionHeaderBytes);
            raw[i] = (U32(header, 0, "sh_name"), U32(header, 4, "sh_type"), U64(header, 16, "sh_addr"), U64(header, 24, "sh_offset"), U64(header, 32, "sh_size"),
                U32(header, 40, "sh_link"), U32(header, 44, "sh_info"), U64(header, 48, "sh_addralign"));
            if (raw[i].Type != ShtNobits)
            {
                Require(image, raw[i].Offset, raw[i].Size, $"ELF section {i}'s data (sh_offset, sh_size in its header at offset {Hex(at)})");
            }
        }

        var names = raw[namesIndex];
        if (names.Type != ShtStrtab)
        {
            throw ModuleImageException.Invalid($"the section names table (section {namesIndex}, e_shstrndx) has type {names.Type}, not a string table");
        }

        var nameTable = image.Slice((int)names.Offset, (int)names.Size);
        var sections = new ElfSection[count];
        for (var i = 0; i < count; i++)
        {
            var s = raw[i];
            var name = ReadString(nameTable, s.Name, $"ELF section {i}'s sh_name");
            sections[i] = new ElfSection(i, name, s.Type, s.Address, s.Offset, s.Size, s.Link, s.Info, s.AddrAlign);
        }

        return new ElfFile(image, sections, machine, flags, image[8]);
    }

    /// <summary>The bytes of a section with data; empty for NOBITS.</summary>
    public ReadOnlySpan<byte> Data(in ElfSection section)
        => section.HasData ? _image.Slice((int)section.Offset, (int)section.Size) : [];

    public ElfSection? Find(string name)
    {
        foreach (var section in Sections)
        {
            if (section.Name == name)
            {
                return section;
            }
        }

        return null;
    }

    /// <summary>The symbols of the first symbol table, or none when there is none.</summary>
    public ElfSymbol[] Symbols()
    {
        var index = Array.FindIndex(Sections, s => s.Type == ShtSymtab);
        if (index < 0)
        {
            return [];
        }

        var table = Sections[index];

        if (table.Size % SymbolBytes != 0)
        {
            throw ModuleImageException.Invalid($"the symbol table ({table.Name}, section {table.Index}) is {table.Size} bytes, not a whole number of {SymbolBytes}-byte symbols");
        }

        if (table.Link >= Sections.Length || Sections[table.Link].Type != ShtStrtab)
        {
            throw ModuleImageException.Invalid($"the symbol table's sh_link ({table.Link}) is not a string table section");
        }

        var data = Data(table);
        var strings = Data(Sections[table.Link]);
        var symbols = new ElfSymbol[data.Length / SymbolBytes];
        for (var i = 0; i < symbols.Length; i++)
        {
            var entry = data.Slice(i * SymbolBytes, SymbolBytes);
            var name = ReadString(strings, U32(entry, 0, "st_name"), $"symbol {i}'s st_name");
            var sectionIndex = U16(entry, 6, "st_shndx");
            if (sectionIndex is not 0 and < ShnLoReserve && sectionIndex >= Sections.Length)
            {
                throw ModuleImageException.Invalid($"symbol {i} ({name}) is defined in section {sectionIndex} (st_shndx), but there are only {Sections.Length} sections");
            }

            symbols[i] = new ElfSymbol(name, entry[4], entry[5], sectionIndex, U64(entry, 8, "st_value"), U64(entry, 16, "st_size"));
        }

        return symbols;
    }

    private static string ReadString(ReadOnlySpan<byte> table, uint index, string what)
    {
        if (index >= table.Length)
        {
            throw ModuleImageException.Invalid($"{what} is {index}, outside its {table.Length}-byte string table");
        }

        var rest = table[(int)index..];
        var end = rest.IndexOf((byte)0);
        if (end < 0)
        {
            throw ModuleImageException.Invalid($"{what} ({index}) names a string that runs to the end of its string table without a NUL");
        }

        return Encoding.UTF8.GetString(rest[..end]);
    }
}
