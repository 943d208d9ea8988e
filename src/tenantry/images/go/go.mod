// The programs in the images Tenantry builds itself, because the local clusters'
// real nodes reach no image registry. Standard library only: nothing to pin.
module tenantry.dev/images

go 1.26.0
