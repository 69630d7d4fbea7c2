"""Where a split's images and labels come from: class trees and flat validation folders on disk or in a bucket,
the ILSVRC tarballs read in place, the devkit, the Kaggle layout, label files and bounding boxes."""
