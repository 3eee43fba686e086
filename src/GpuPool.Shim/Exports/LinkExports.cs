using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// Run-time linking (cuLinkCreate, AddData/AddFile, Complete). The shim has no device linker: the broker's backend
/// compiles what it is given. So a link of ONE input (PTX, a cubin or a fat binary: what ptxjit-style programs do)
/// completes with that input as the image, which the program then loads; a second input (relocatable device code
/// across several objects, libraries, NVVM) is CUDA_ERROR_NOT_SUPPORTED at the call that adds it, naming why.
/// </summary>
internal static unsafe partial class Cuda
{
    private const int JitInputCubin = 0;
    private const int JitInputPtx = 1;
    private const int JitInputFatBinary = 2;

    private static readonly HandleTable<LinkState> Links = new(HandleKind.Link);

    [UnmanagedCallersOnly(EntryPoint = "cuLinkCreate_v2")]
    internal static CuResult LinkCreate(uint optionCount, int* options, nint* optionValues, nint* state)
    {
        try
        {
            NotNull(state, "stateOut");
            _ = Driver.Instance;
            if (optionCount > 0 && (options is null || optionValues is null))
            {
                throw new CudaException(CuResult.InvalidValue, $"{optionCount} options but no option arrays");
            }

            var link = new LinkState(optionCount, options, optionValues);
            link.Handle = Links.Add(link);
            *state = link.Handle;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuLinkCreate", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuLinkAddData_v2")]
    internal static CuResult LinkAddData(nint state, int type, byte* data, nuint size, byte* name, uint optionCount, int* options, nint* optionValues)
    {
        try
        {
            var link = ResolveLink(state);
            NotNull(data, "data");
            if (size == 0 || size > int.MaxValue)
            {
                throw new CudaException(CuResult.InvalidValue, $"an input of {size} bytes");
            }

            link.Add(type, new ReadOnlySpan<byte>(data, (int)size).ToArray(), name is null ? "(unnamed)" : Utf8.Read(name));
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuLinkAddData", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuLinkAddFile_v2")]
    internal static CuResult LinkAddFile(nint state, int type, byte* path, uint optionCount, int* options, nint* optionValues)
    {
        try
        {
            var link = ResolveLink(state);
            NotNull(path, "path");
            var file = Utf8.Read(path);
            link.Add(type, ReadModuleFile(file), file);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuLinkAddFile", ex);
        }
    }

    /// <summary>Hands back the one input as the linked image; it stays valid until cuLinkDestroy, as the driver's does.</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuLinkComplete")]
    internal static CuResult LinkComplete(nint state, void** image, nuint* size)
    {
        try
        {
            var link = ResolveLink(state);
            NotNull(image, "cubinOut");
            NotNull(size, "sizeOut");
            var (address, length) = link.Complete();
            *image = (void*)address;
            *size = length;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuLinkComplete", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuLinkDestroy")]
    internal static CuResult LinkDestroy(nint state)
    {
        try
        {
            var link = ResolveLink(state);
            Links.Remove(state);
            link.Dispose();
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuLinkDestroy", ex);
        }
    }

    private static LinkState ResolveLink(nint handle)
        => handle != 0 && Links.TryGet(handle, out var link)
            ? link
            : throw new CudaException(CuResult.InvalidHandle, $"0x{(ulong)handle:x} is not a link state (never created, or destroyed)");

    /// <summary>A module file's bytes, with the driver's errors for a missing or unreadable file.</summary>
    internal static byte[] ReadModuleFile(string path)
    {
        try
        {
            return File.ReadAllBytes(path);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new CudaException(CuResult.FileNotFound, $"no module file {path}");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CudaException(CuResult.OperatingSystem, $"cannot read {path}: {ex.Message}");
        }
    }

    /// <summary>One link in progress: its single input, and the native copy cuLinkComplete hands out.</summary>
    private sealed class LinkState : IDisposable
    {
        private readonly object _gate = new();
        private byte[]? _input;
        private string _inputName = "";
        private nint _output;

        public LinkState(uint optionCount, int* options, nint* values)
        {
            // Log buffers are left as given: a link of one input writes nothing to them, as a link that succeeds
            // quietly does; the options that tune code generation are the backend's to apply.
            _ = optionCount;
            _ = options;
            _ = values;
        }

        public nint Handle { get; set; }

        public void Add(int type, byte[] data, string name)
        {
            if (type is not (JitInputCubin or JitInputPtx or JitInputFatBinary))
            {
                throw new CudaException(CuResult.NotSupported, $"link input '{name}' is of type {type} (an object, a library or NVVM IR): the shim links only PTX, cubins and fat binaries");
            }

            lock (_gate)
            {
                if (_input is not null)
                {
                    throw new CudaException(CuResult.NotSupported,
                        $"link input '{name}' is a second input after '{_inputName}': the shim has no device linker, so it completes a link of one input only (build with -rdc=false, or link with nvlink ahead of time)");
                }

                // Reading it now reports a broken input at the call that added it, as the driver does.
                _ = ReadImage(data);
                _input = data;
                _inputName = name;
            }
        }

        public (nint Address, nuint Length) Complete()
        {
            lock (_gate)
            {
                if (_input is null)
                {
                    throw new CudaException(CuResult.InvalidValue, "nothing was added to the link");
                }

                if (_output == 0)
                {
                    // One byte more, zero: PTX handed on as a C string stays terminated.
                    _output = (nint)NativeMemory.AllocZeroed((nuint)_input.Length + 1);
                    _input.CopyTo(new Span<byte>((void*)_output, _input.Length));
                }

                return (_output, (nuint)_input.Length);
            }
        }

        public void Dispose()
        {
            lock (_gate)
            {
                if (_output != 0)
                {
                    NativeMemory.Free((void*)_output);
                    _output = 0;
                }
            }
        }
    }
}
