using GpuPool.Modules.Fatbin;

namespace GpuPool.Modules.Tests;

/// <summary>
/// Real images with random bytes changed or cut short: reading one either works or fails as a
/// <see cref="ModuleImageException"/>, whatever was changed. Seeded, so a failure repeats.
/// </summary>
public sealed partial class MalformedImageTests
{
    private const int Iterations = 2000;

    [Fact]
    public void A_compressed_fat_binary_with_random_damage_fails_only_as_an_image_error()
        => Damage(FatBinaryImage, seed: 1, FatBinaryStructure);

    [Fact]
    public void A_stored_fat_binary_with_random_damage_fails_only_as_an_image_error()
        => Damage(StoredFatBinaryImage, seed: 2, FatBinaryStructure);

    [Fact]
    public void A_cubin_with_random_damage_fails_only_as_an_image_error()
        => Damage(CubinImage, seed: 3, CubinStructure);

    /// <summary>The container header and entry headers, where damage changes how the rest is read.</summary>
    private static List<(int, int)> FatBinaryStructure(byte[] image)
        => [(0, 16), .. FatBinary.Read(image).Select(e => ((int)e.Offset, 64))];

    /// <summary>The ELF header, section headers, symbols and .nv.info sections.</summary>
    private static List<(int, int)> CubinStructure(byte[] image)
    {
        var layout = new ElfLayout(image);
        var sections = image.U16(0x3C);
        return [(0, 64), ((int)image.U64(0x28), sections * 64), layout.SectionData(".symtab"), layout.SectionData(".nv.info.touch")];
    }

    private static void Damage(byte[] original, int seed, Func<byte[], List<(int Offset, int Size)>> structureOf)
    {
        var structure = structureOf(original);
        var random = new Random(seed);
        for (var i = 0; i < Iterations; i++)
        {
            var image = (byte[])original.Clone();
            var changes = new List<string>();
            for (var n = random.Next(1, 4); n > 0; n--)
            {
                // Half the damage lands where the structure is described; the rest anywhere, code and text included.
                var (from, size) = random.Next(2) == 0 ? structure[random.Next(structure.Count)] : (0, image.Length);
                var at = from + random.Next(size);
                image[at] = random.Next(3) == 0 ? (byte)random.Next(256) : (byte)(image[at] ^ (1 << random.Next(8)));
                changes.Add($"byte {at} = 0x{image[at]:X2}");
            }

            var length = random.Next(8) == 0 ? random.Next(image.Length) : image.Length;
            try
            {
                ModuleImage.Read(image.AsSpan(0, length));
            }
            catch (ModuleImageException)
            {
                // What damage should do.
            }
            catch (Exception e)
            {
                Assert.Fail($"seed {seed}, iteration {i} ({string.Join(", ", changes)}, cut to {length} of {image.Length} bytes) threw {e}");
            }
        }
    }
}
