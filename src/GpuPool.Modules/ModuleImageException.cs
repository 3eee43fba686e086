namespace GpuPool.Modules;

/// <summary>Why a module image cannot be read.</summary>
public enum ModuleImageError
{
    /// <summary>The image is malformed: a size, offset or index in it is wrong (cuModuleLoadData's CUDA_ERROR_INVALID_IMAGE).</summary>
    InvalidImage,

    /// <summary>PTX text (an image, or a fat binary's entry) whose entry points cannot be read (CUDA_ERROR_INVALID_PTX).</summary>
    InvalidPtx,

    /// <summary>The image may be fine, but uses something this reader does not handle: zstd compression, a newer container version, a 32-bit ELF.</summary>
    NotSupported,
}

/// <summary>A module image that cannot be read; the message names what is wrong and, where there is one, at which offset.</summary>
public sealed class ModuleImageException : Exception
{
    public ModuleImageException(ModuleImageError error, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Error = error;
    }

    public ModuleImageError Error { get; }

    internal static ModuleImageException Invalid(string message) => new(ModuleImageError.InvalidImage, message);

    internal static ModuleImageException Unsupported(string message) => new(ModuleImageError.NotSupported, message);
}
