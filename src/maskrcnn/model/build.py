"""The one place that reads a ModelConfig: builds Mask R-CNN from its stages."""

from __future__ import annotations

from maskrcnn.config import ModelConfig
from maskrcnn.model.anchors import AnchorGenerator
from maskrcnn.model.backbone import ResNet
from maskrcnn.model.box_head import BoxHead, BoxPredictor
from maskrcnn.model.fpn import BackboneWithFPN
from maskrcnn.model.mask_head import MaskHead
from maskrcnn.model.mask_rcnn import MaskRCNN
from maskrcnn.model.poolers import MultiLevelRoIAlign
from maskrcnn.model.roi_heads import RoIHeads
from maskrcnn.model.rpn import RPN, RPNHead


def build_model(config: ModelConfig) -> MaskRCNN:
    bb, rpn_cfg, roi, inp = config.backbone, config.rpn, config.roi_heads, config.input
    bottom_up = ResNet(
        depth=bb.depth,
        norm=bb.norm,
        frozen_eps=bb.frozen_bn_eps,
        stem_width=bb.stem_width,
        freeze_at=bb.freeze_at,
        groups=bb.groups,
        width_per_group=bb.width_per_group,
        stride_in_1x1=bb.stride_in_1x1,
    )
    backbone = BackboneWithFPN(
        bottom_up=bottom_up, in_channels=bottom_up.out_channels, out_channels=bb.fpn_channels, norm=bb.fpn_norm
    )
    if len(rpn_cfg.anchor_sizes) != len(backbone.strides):
        raise ValueError(f"need one anchor size per FPN level ({len(backbone.strides)}), got {rpn_cfg.anchor_sizes}")

    anchor_generator = AnchorGenerator(
        sizes=rpn_cfg.anchor_sizes,
        aspect_ratios=rpn_cfg.aspect_ratios,
        strides=backbone.strides,
        strides_from_image_size=rpn_cfg.torchvision_anchor_strides,
        rounded=rpn_cfg.round_anchors,
    )
    rpn = RPN(
        head=RPNHead(
            in_channels=bb.fpn_channels, num_anchors=anchor_generator.num_anchors_per_cell, num_convs=rpn_cfg.head_convs
        ),
        anchor_generator=anchor_generator,
        pre_nms_topk=(rpn_cfg.pre_nms_topk_train, rpn_cfg.pre_nms_topk_test),
        post_nms_topk=(rpn_cfg.post_nms_topk_train, rpn_cfg.post_nms_topk_test),
        nms_thresh=rpn_cfg.nms_thresh,
        min_box_size=rpn_cfg.min_box_size,
        fg_iou_thresh=rpn_cfg.fg_iou_thresh,
        bg_iou_thresh=rpn_cfg.bg_iou_thresh,
        batch_size_per_image=rpn_cfg.batch_size_per_image,
        positive_fraction=rpn_cfg.positive_fraction,
        box_loss_beta=rpn_cfg.box_loss_beta,
        crowd_ioa_thresh=roi.crowd_ioa_thresh,
    )

    pooled_strides = backbone.strides[:4]  # RoIs read P2-P5
    box_head = BoxHead(
        in_channels=bb.fpn_channels,
        pool_size=roi.box_pool_size,
        fc_dim=roi.fc_dim,
        num_fc=roi.num_fc,
        num_convs=roi.box_head_convs,
        conv_dim=roi.box_conv_dim,
        norm=roi.head_norm,
    )
    pooling = {"strides": pooled_strides, "sampling_ratio": roi.sampling_ratio, "aligned": roi.aligned,
               "level_assignment": roi.level_assignment}  # fmt: skip
    roi_heads = RoIHeads(
        box_pooler=MultiLevelRoIAlign(output_size=roi.box_pool_size, **pooling),
        box_head=box_head,
        box_predictor=BoxPredictor(in_dim=box_head.out_dim, num_classes=config.num_classes),
        mask_pooler=MultiLevelRoIAlign(output_size=roi.mask_pool_size, **pooling),
        mask_head=MaskHead(
            in_channels=bb.fpn_channels,
            conv_dim=roi.mask_conv_dim,
            num_convs=roi.num_mask_convs,
            num_classes=config.num_classes,
            norm=roi.head_norm,
        ),
        box_reg_weights=roi.box_reg_weights,
        fg_iou_thresh=roi.fg_iou_thresh,
        bg_iou_thresh=roi.bg_iou_thresh,
        batch_size_per_image=roi.batch_size_per_image,
        positive_fraction=roi.positive_fraction,
        box_loss_beta=roi.box_loss_beta,
        crowd_ioa_thresh=roi.crowd_ioa_thresh,
        score_thresh=roi.score_thresh,
        nms_thresh=roi.nms_thresh,
        detections_per_image=roi.detections_per_image,
        min_box_size=roi.min_box_size,
    )
    return MaskRCNN(
        backbone=backbone,
        rpn=rpn,
        roi_heads=roi_heads,
        pixel_mean=inp.pixel_mean,
        pixel_std=inp.pixel_std,
        min_size=inp.min_size_test,
        max_size=inp.max_size_test,
        size_divisible=inp.size_divisible,
        resize=inp.resize,
        mask_threshold=roi.mask_threshold,
        mask_paste=roi.mask_paste,
    )
